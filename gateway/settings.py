"""Gateway settings from the environment (prefix ``BROBYGGER_``), safe for ``make run``.

Development defaults (SQLite under ``var/``, generated keys under ``var/keys/``) are refused
when ``BROBYGGER_ENVIRONMENT=production`` unless replaced.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/brobygger.db"
# Development placeholders for the gateway Organization's SOR and EAN (a valid GS1 check digit).
DEV_GATEWAY_SOR = "999999999999999"
DEV_GATEWAY_EAN = "5790000999996"
MIN_OPERATOR_TOKEN_LENGTH = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    # The deadline job (gateway/coordination): judge open deadline Tasks against today and
    # notify their owners, in each gateway process (else: ``brobygger deadlines refresh``).
    deadline_in_process: bool = True
    deadline_poll_seconds: float = 300.0
    # Store-and-forward delivery of messages to receivers' endpoints (gateway/messaging).
    # Run the delivery worker inside each gateway process (else: ``brobygger deliver``).
    delivery_in_process: bool = True
    # How often an idle worker looks for due deliveries.
    delivery_poll_seconds: float = 1.0
    # Rows one worker claims at a time, and how many of them it POSTs at once.
    delivery_batch_size: int = 20
    delivery_concurrency: int = 8
    # A claimed row is the worker's for this long; a crashed worker's rows come back after it.
    delivery_lease_seconds: int = 120
    delivery_timeout_seconds: float = 30.0
    delivery_connect_timeout_seconds: float = 5.0
    # Retries: base * 2**(attempt-1) seconds, at most max, with jitter; failed after max_attempts.
    delivery_backoff_base_seconds: float = 5.0
    delivery_backoff_max_seconds: float = 3600.0
    delivery_max_attempts: int = 12
    # Send a plain signed JWS to a receiver without an encryption key (closed networks only).
    delivery_allow_plain_jws: bool = False
    # At shutdown, how long in-flight deliveries may finish before they are cancelled (their
    # rows stay leased and are delivered again after the lease: at least once).
    delivery_shutdown_grace_seconds: float = 5.0
    # Messaging (gateway/messaging): "required" refuses a plain signed JWS; "optional" allows
    # it (a closed network). A message's timestamp must be within the window of now.
    message_encryption: Literal["required", "optional"] = "required"
    message_window_seconds: int = 900
    max_message_bytes: int = 8 * 1024 * 1024
    # The gateway Organization that sends the gateway's own acknowledgements (MedCom requires
    # a SOR code and an EAN/GLN on every message's sender). The defaults are placeholders
    # for development: set the gateway's registered ones in production.
    gateway_sor: str = DEV_GATEWAY_SOR
    gateway_ean: str = DEV_GATEWAY_EAN
    # Bearer token for /metrics (and, besides participants' access tokens, /docs and
    # /openapi.json). Unset: the file <keys_dir>/operator-token, generated on first start
    # outside production (gateway/ops/_operator.py).
    operator_token: SecretStr | None = None
    # --- Limits on hostile or broken input (docs/operations.md, "Limits") -------------------
    # Each refusal is an OperationOutcome naming the setting: 400 (413 for sizes), never 503.
    # XML documents (ingest, a Binary in a message): checked while the document is read.
    xml_max_attributes: int = Field(64, ge=1)
    xml_max_elements: int = Field(50_000, ge=1)
    xml_max_depth: int = Field(32, ge=2)
    xml_max_text_chars: int = Field(100_000, ge=1)
    # JSON bodies (REST, $validate, signed message payloads, acknowledgements).
    json_max_depth: int = Field(64, ge=2)
    json_max_array_length: int = Field(10_000, ge=1)
    # A base64 Binary holding a 5 MB document is 7 M characters.
    json_max_string_chars: int = Field(7_500_000, ge=1)
    # Search: values OR-ed in one parameter, parameters per request, chain (and _has) depth,
    # _include/_revinclude parameters, and resources they may add to one page.
    search_max_or_values: int = Field(100, ge=1)
    search_max_parameters: int = Field(30, ge=1)
    search_max_chain_depth: int = Field(3, ge=1)
    search_max_includes: int = Field(10, ge=0)
    search_max_included_resources: int = Field(1_000, ge=1)
    # CPU-heavy work (parsing, mapping, validating a document or a large body) runs in this
    # many worker processes, off the event loop; each document gets this much CPU time.
    cpu_workers: int = Field(2, ge=1, le=64)
    document_cpu_budget_seconds: float = Field(10.0, gt=0)
    # JSON bodies up to this size are parsed and validated on the event loop (a hop to a
    # worker process costs more than they do); larger ones in the worker pool.
    inline_body_bytes: int = Field(65_536, ge=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().upper() in LOG_LEVELS:
            return value.strip().upper()
        raise ValueError(f"the log level must be one of {', '.join(LOG_LEVELS)}")

    @field_validator("operator_token", mode="before")
    @classmethod
    def _empty_operator_token_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _operator_token_is_long(self) -> Settings:
        token = self.operator_token
        if token is not None and len(token.get_secret_value().strip()) < MIN_OPERATOR_TOKEN_LENGTH:
            raise ValueError(
                f"BROBYGGER_OPERATOR_TOKEN must be at least {MIN_OPERATOR_TOKEN_LENGTH} "
                "characters (e.g. openssl rand -hex 32)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url == DEFAULT_DATABASE_URL:
                raise ValueError("production needs BROBYGGER_DATABASE_URL (not the dev SQLite)")
            if self.demo:
                raise ValueError("demo participants and dev keys are refused in production")
            if not self.enforce_consent:
                raise ValueError("consent enforcement cannot be switched off in production")
            if self.message_encryption != "required" or self.delivery_allow_plain_jws:
                raise ValueError("production messages must be encrypted (JWE), both ways")
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
