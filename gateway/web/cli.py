"""``brobygger web add-user --as P --username U --name "…"`` (password prompted or on stdin)."""

from __future__ import annotations

import asyncio
import sys

import typer

from gateway.errors import GatewayError
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.web._staff import StaffDirectory

web_app = typer.Typer(no_args_is_help=True, help="The caseworkers' web view")


@web_app.command("add-user")
def add_user(
    as_: str = typer.Option(..., "--as", help="the participant the person works for"),
    username: str = typer.Option(..., help="the sign-in name (a-z 0-9 . _ -)"),
    name: str = typer.Option(..., help="the name shown in the web view"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from standard input"
    ),
) -> None:
    """Add a staff user who signs in to the web view for participant AS (Argon2id hash)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = Settings()

    async def run() -> None:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            await ParticipantDirectory(database).get(as_)
            await StaffDirectory(database).add(as_, username, name, password)
        finally:
            await database.dispose()

    try:
        asyncio.run(run())
    except GatewayError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"added {username} for {as_}")


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="web")
