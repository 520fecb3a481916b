"""``brobygger deadlines refresh``, ``brobygger worklist --as P [--overdue]`` and
``brobygger plan show --as P --cpr C`` / ``brobygger plan push`` (the shared plan)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.auth.citizens import patients_with_cpr
from gateway.clock import SYSTEM_CLOCK, ManualClock, today
from gateway.coordination.deadlines import RefreshReport, refresh_deadlines
from gateway.coordination.plan import PushReport, plan_view, plans_of, push_plan_changes
from gateway.coordination.worklist import row, worklist
from gateway.data.path import DataPath, principal_for
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from mappings.coordination import plan_summary

deadlines_app = typer.Typer(no_args_is_help=True, help="The deadline clock")
plan_app = typer.Typer(no_args_is_help=True, help="The shared plan per sick-listed citizen")


@plan_app.command("show")
def plan_show(
    as_: str = typer.Option(..., "--as", help="the participant whose view to print"),
    cpr: str = typer.Option(..., "--cpr", help="the citizen's CPR number"),
    purpose: str | None = typer.Option(None, help="the purpose of use (default: the kind's)"),
) -> None:
    """Print the citizen's shared plan as this participant sees it (consent applies)."""
    settings = Settings()

    async def run() -> list[str]:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            participant = await ParticipantDirectory(database).get(as_)
            principal = principal_for(participant)
            patients = await patients_with_cpr(database, cpr)
            if participant.kind == "citizen-portal":
                principal = (
                    replace(principal, scopes=frozenset({"patient/*.read"}), patient=patients[0])
                    if patients
                    else principal
                )
            if purpose is not None:
                principal = replace(principal, purpose=purpose)
            data = DataPath(
                Store(database, fhir_base=settings.fhir_base),
                principal,
                enforce=settings.enforce_consent,
            )
            texts = []
            for patient in patients:
                for plan in await plans_of(data, patient):
                    texts.append(plan_summary(await plan_view(data, str(plan["id"]))))
            return texts
        finally:
            await database.dispose()

    texts = asyncio.run(run())
    if not texts:
        typer.echo(f"{as_} sees no shared plan for this citizen")
        raise typer.Exit(1)
    typer.echo("\n".join(texts), nl=False)


@plan_app.command("push")
def plan_push() -> None:
    """Announce every changed part of every plan to the parties that follow it (once)."""
    settings = Settings()

    async def run() -> PushReport:
        database = Database(settings.database_url)
        try:
            await database.migrate()
            return await push_plan_changes(Store(database, fhir_base=settings.fhir_base), settings)
        finally:
            await database.dispose()

    report = asyncio.run(run())
    typer.echo(f"{report.plans} plans, {report.parts} parts, {len(report.notices)} notices")
    for part, receiver in report.notices:
        typer.echo(f"  {receiver}: {part}")


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
    app.add_typer(plan_app, name="plan")

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
