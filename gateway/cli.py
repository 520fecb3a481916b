"""The ``brobygger`` command line: serve, migrate, participants, tokens, messages, audit.

``main`` is the console script: it runs the typer app and turns a configuration error
(a bad ``BROBYGGER_*`` variable) into one line naming the setting, exit code 2.
"""

from __future__ import annotations

import asyncio
import os
import sys

import typer
import uvicorn
from pydantic import ValidationError

from gateway.audit_cli import register as register_audit_command
from gateway.cli_output import fail
from gateway.coordination.cli import register as register_coordination_commands
from gateway.figures.cli import register as register_figures_command
from gateway.ingest.cli import register as register_ingest_commands
from gateway.messaging.cli import register as register_messaging_commands
from gateway.participants.cli import register as register_participant_commands
from gateway.patients_cli import register as register_patient_commands
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.web.cli import register as register_web_commands

app = typer.Typer(
    no_args_is_help=True,
    help="Brobygger FHIR gateway",
    # Plain click help: options show their metavar (--to NAME), text is printed as written.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema")
app.add_typer(db_app, name="db")
register_participant_commands(app)
register_audit_command(app)
register_ingest_commands(app)
register_coordination_commands(app)
register_patient_commands(app)
register_figures_command(app)
register_web_commands(app)


EXIT_CONFIGURATION = 2


def configuration_error(exc: ValidationError) -> str:
    """One line naming each bad setting (as its environment variable) and what it allows.

    Values are not repeated: a setting may be a secret (the operator token, a database URL
    with a password).
    """
    problems: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = [str(part) for part in err.get("loc", ()) if isinstance(part, str)]
        problems.append(f"BROBYGGER_{loc[0].upper()}: {text}" if loc else text)
    return "configuration error: " + "; ".join(problems)


def main() -> None:
    """The ``brobygger`` console script."""
    try:
        app()
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        print(configuration_error(exc), file=sys.stderr)  # before any logging is set up
        sys.exit(EXIT_CONFIGURATION)


def _production_keys_missing(settings: Settings) -> str | None:
    """In production the gateway's keys must exist before the first start (never generated)."""
    from gateway.auth.keys import GATEWAY_SIGNING_KEY, private_key_path
    from gateway.messaging.keys import GATEWAY_ENCRYPTION_KEY

    if settings.environment != "production":
        return None
    missing = [
        str(path)
        for path in (
            private_key_path(settings.keys_dir, GATEWAY_SIGNING_KEY),
            private_key_path(settings.keys_dir, GATEWAY_ENCRYPTION_KEY, use="enc"),
        )
        if not path.exists()
    ]
    if not missing:
        return None
    return (
        f"production needs the gateway's keys before it starts; missing: {', '.join(missing)}. "
        "Create them once with: brobygger keys gateway (docs/operations.md, Docker compose)"
    )


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", metavar="ADDRESS", help="interface to listen on"),
    port: int = typer.Option(8080, metavar="PORT", help="TCP port"),
    demo: bool = typer.Option(False, help="create the demo participants and their dev keys"),
    workers: int = typer.Option(
        1, metavar="N", help="worker processes (more than 1 with PostgreSQL only)"
    ),
) -> None:
    """Start the gateway (it migrates the database first)."""
    if demo:
        os.environ["BROBYGGER_DEMO"] = "true"
    # A container listens on 0.0.0.0, which is no address a client can use for the token
    # audience: keep the default base URL then (set BROBYGGER_BASE_URL for the real one).
    if host not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        os.environ.setdefault("BROBYGGER_BASE_URL", f"http://{host}:{port}")
    settings = Settings()
    problem = _production_keys_missing(settings)
    if problem is not None:
        # One line and a plain exit: compose's restart policy (on-failure, bounded) does not
        # spin on a gateway that can never start.
        raise fail(problem, EXIT_CONFIGURATION)
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all schema migrations to BROBYGGER_DATABASE_URL (safe to run again)."""
    settings = Settings()

    async def run() -> str | None:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            return await database.current_revision()
        finally:
            await database.dispose()

    revision = asyncio.run(run())
    typer.echo(f"database at revision {revision}")


keys_app = typer.Typer(
    no_args_is_help=True, help="Keys: the gateway's own (gateway) and a participant's (participant)"
)
app.add_typer(keys_app, name="keys")


@keys_app.command("gateway")
def gateway_key() -> None:
    """Create the gateway's signing key and message decryption key in BROBYGGER_KEYS_DIR.

    Run it once before the first production start; run again, it keeps the keys it finds.
    """
    from gateway.auth.keys import (
        ACCESS_TOKEN_ALGORITHM,
        GATEWAY_SIGNING_KEY,
        load_or_create_key,
        private_key_path,
    )
    from gateway.messaging.keys import GATEWAY_ENCRYPTION_KEY

    settings = Settings()
    path = private_key_path(settings.keys_dir, GATEWAY_SIGNING_KEY)
    existed = path.exists()
    key = load_or_create_key(path, alg=ACCESS_TOKEN_ALGORITHM)
    typer.echo(f"{'kept' if existed else 'created'} {path} (kid {key.kid})")
    path = private_key_path(settings.keys_dir, GATEWAY_ENCRYPTION_KEY, use="enc")
    existed = path.exists()
    key = load_or_create_key(path, use="enc")
    typer.echo(f"{'kept' if existed else 'created'} {path} (kid {key.kid})")


register_messaging_commands(app)  # needs keys_app: adds ``keys participant``
