"""Gateway settings from the environment (prefix ``BROBYGGER_``), safe for ``make run``.

Development defaults (SQLite under ``var/``, generated keys under ``var/keys/``) are refused
when ``BROBYGGER_ENVIRONMENT=production`` unless replaced.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/brobygger.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROBYGGER_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    # The public base URL clients use; token audiences and Bundle links are built from it.
    base_url: str = "http://127.0.0.1:8080"
    var_dir: Path = Path("var")
    # Directory holding the gateway's own signing key and the demo participants' dev keys.
    keys_dir: Path = Path("var/keys")
    access_token_lifetime_seconds: int = 300
    # SMART Backend Services: a client assertion may live at most five minutes.
    max_assertion_lifetime_seconds: int = 300
    clock_skew_seconds: int = 60
    default_page_size: int = 50
    max_page_size: int = 500
    max_body_bytes: int = 10 * 1024 * 1024
    demo: bool = False
    # Consent enforcement on every read path; off only for benchmarks (refused in production).
    enforce_consent: bool = True
    # Read-path AuditEvents: "sync" commits them before the response; "batched" commits them
    # right after, many per transaction (see gateway/store/audit_writer.py for the trade-off).
    audit_write: Literal["sync", "batched"] = "sync"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url == DEFAULT_DATABASE_URL:
                raise ValueError("production needs BROBYGGER_DATABASE_URL (not the dev SQLite)")
            if self.demo:
                raise ValueError("demo participants and dev keys are refused in production")
            if not self.enforce_consent:
                raise ValueError("consent enforcement cannot be switched off in production")
            if self.keys_dir == Path("var/keys"):
                raise ValueError("production needs BROBYGGER_KEYS_DIR outside the work tree")
        return self

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def token_url(self) -> str:
        return self.base_url.rstrip("/") + "/auth/token"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
