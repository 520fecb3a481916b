"""FastAPI dependencies as ``Annotated`` aliases: no globals, everything hangs off app.state.

All ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread (a thread hop
per dependency per request); these only look things up.
"""

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


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="brobygger"'}


async def get_principal(request: Request) -> Principal:
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


async def get_data_path(request: Request, principal: PrincipalDep) -> DataPath:
    """The caller's guarded data path (the only way a route reaches stored resources)."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    return DataPath(store, principal, enforce=settings.enforce_consent)


DataDep = Annotated[DataPath, Depends(get_data_path)]
