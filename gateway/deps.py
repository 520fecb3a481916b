"""FastAPI dependencies as ``Annotated`` aliases: no globals, everything hangs off app.state."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request

from gateway.auth.principal import Principal
from gateway.data import DataPath
from gateway.errors import Unauthorized
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store


class AccessTokenVerifier(Protocol):
    def verify_access_token(self, token: str) -> Principal: ...


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="brobygger"'}


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer access token is required", headers=BEARER_CHALLENGE)
    verifier: AccessTokenVerifier = request.app.state.tokens
    principal = verifier.verify_access_token(token.strip())
    request.state.principal = principal
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[Store, Depends(get_store)]
DatabaseDep = Annotated[Database, Depends(get_database)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_data_path(request: Request, principal: PrincipalDep) -> DataPath:
    """The caller's guarded data path (the only way a route reaches stored resources)."""
    settings = get_settings_dep(request)
    return DataPath(get_store(request), principal, enforce=settings.enforce_consent)


DataDep = Annotated[DataPath, Depends(get_data_path)]
