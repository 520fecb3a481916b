"""``brobygger deadlines refresh`` and ``brobygger worklist --as P [--overdue]``."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.clock import SYSTEM_CLOCK, ManualClock, today
from gateway.coordination.deadlines import RefreshReport, refresh_deadlines
from gateway.coordination.worklist import row, worklist
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

deadlines_app = typer.Typer(no_args_is_help=True, help="The deadline clock")


def _clock(on: str | None) -> Any:
    if on is None:
        return SYSTEM_CLOCK
    from datetime import datetime

    from gateway.clock import DANISH_TIME

    day = date.fromisoformat(on)
    return ManualClock(datetime(day.year, day.month, day.day, 12, tzinfo=DANISH_TIME))


@deadlines_app.command("refresh")
def refresh(
    on: str | None = typer.Option(None, help="judge as if today were this day (YYYY-MM-DD)"),
) -> None:
    """Mark every open deadline whose day has passed overdue and notify its owner (once)."""
    settings = Settings()
    clock = _clock(on)

    async def run() -> RefreshReport:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            return await refresh_deadlines(
                Store(database, fhir_base=settings.fhir_base), settings, clock
            )
        finally:
            await database.dispose()

    report = asyncio.run(run())
    typer.echo(
        f"{report.today}: {report.checked} open deadlines, "
        f"{len(report.turned_overdue)} turned overdue, {len(report.notified)} owners notified, "
        f"{len(report.created)} note deadlines created, {len(report.met)} met by a note"
    )
    for ref, owner in report.notified:
        typer.echo(f"  notified {owner}: {ref}")
    for ref in report.unowned:
        typer.echo(f"  overdue, owner not a participant: {ref}")


def register(app: typer.Typer) -> None:
    app.add_typer(deadlines_app, name="deadlines")

    @app.command("worklist")
    def worklist_command(
        as_: str = typer.Option(..., "--as", help="the participant whose worklist to show"),
        overdue: bool = typer.Option(False, "--overdue", help="only what is overdue today"),
        until: str | None = typer.Option(None, help="only what is due by this day (YYYY-MM-DD)"),
        on: str | None = typer.Option(None, help="judge as if today were this day"),
        waiting: bool = typer.Option(
            False, "--waiting", help="what it requested from others (notes due to it)"
        ),
    ) -> None:
        """A participant's open Tasks, soonest due first, as it may see them (consent applies)."""
        settings = Settings()
        day = today(_clock(on))

        async def run() -> list[dict[str, Any]]:
            database = Database(settings.database_url)
            try:
                await database.migrate()
                participant = await ParticipantDirectory(database).get(as_)
                return await worklist(
                    Store(database, fhir_base=settings.fhir_base),
                    participant,
                    today=day,
                    overdue=overdue,
                    until=date.fromisoformat(until) if until else None,
                    waiting=waiting,
                    enforce=settings.enforce_consent,
                )
            finally:
                await database.dispose()

        tasks = asyncio.run(run())
        console = Console(width=160)
        if not tasks:
            console.print(f"nothing {'overdue' if overdue else 'open'} for {as_}")
            return
        kind = "Waiting for" if waiting else "Worklist of"
        table = Table(title=f"{kind} {as_} on {day} ({len(tasks)})")
        for column in ("due", "status", "state", "what", "for", "task"):
            table.add_column(column, overflow="fold")
        for task in tasks:
            table.add_row(*row(task, day))
        console.print(table)
