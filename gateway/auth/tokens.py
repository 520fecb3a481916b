"""Placeholder: access token issue/verify (being written)."""

from __future__ import annotations

from gateway.auth.principal import Principal
from gateway.errors import Unauthorized
from gateway.settings import Settings
from gateway.store.database import Database


class TokenService:
    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> TokenService:
        return cls()

    def verify_access_token(self, token: str) -> Principal:
        raise Unauthorized("not implemented yet")
