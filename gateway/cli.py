"""The ``brobygger`` command line: serve, migrate, participants, tokens."""

from __future__ import annotations

import asyncio
import os

import typer
import uvicorn

from gateway.audit_cli import register as register_audit_command
from gateway.coordination.cli import register as register_coordination_commands
from gateway.figures.cli import register as register_figures_command
from gateway.ingest.cli import register as register_ingest_commands
from gateway.messaging.cli import register as register_messaging_commands
from gateway.participants.cli import register as register_participant_commands
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.web.cli import register as register_web_commands

app = typer.Typer(no_args_is_help=True, help="Brobygger FHIR gateway")
db_app = typer.Typer(no_args_is_help=True, help="Database schema")
app.add_typer(db_app, name="db")
register_participant_commands(app)
register_audit_command(app)
register_ingest_commands(app)
register_coordination_commands(app)
register_figures_command(app)
register_web_commands(app)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8080, help="TCP port"),
    demo: bool = typer.Option(False, help="create the demo participants and their dev keys"),
    workers: int = typer.Option(1, help="worker processes (PostgreSQL only for more than 1)"),
) -> None:
    """Start the gateway (migrates the database first)."""
    if demo:
        os.environ["BROBYGGER_DEMO"] = "true"
    os.environ.setdefault("BROBYGGER_BASE_URL", f"http://{host}:{port}")
    settings = Settings()
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
    """Apply all schema migrations to BROBYGGER_DATABASE_URL."""
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


keys_app = typer.Typer(no_args_is_help=True, help="The gateway's own keys")
app.add_typer(keys_app, name="keys")


@keys_app.command("gateway")
def gateway_key() -> None:
    """Create the gateway's signing key and message decryption key in BROBYGGER_KEYS_DIR (once)."""
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
