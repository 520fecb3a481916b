"""``brobygger audit --cpr CPR``: who has looked at a citizen's data, as a readable table."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.settings import Settings
from gateway.store import audit_log
from gateway.store.database import Database
from gateway.store.repository import Store

CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"


async def audit_trail(store: Store, cpr: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """AuditEvents about the citizen with this CPR number, newest first."""
    patients = await store.search(
        store.parse("Patient", [("identifier", f"{CPR_SYSTEM}|{cpr}"), ("_count", "50")])
    )
    events: list[dict[str, Any]] = []
    async with store.read_connection() as conn:
        for patient in patients.matches:
            found, _ = await audit_log.search(
                conn, audit_log.AuditQuery(patient_id=str(patient["id"]), count=limit)
            )
            events += found
    events.sort(key=lambda e: str(e.get("recorded", "")), reverse=True)
    return events[:limit]


def _row(event: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    agent = (event.get("agent") or [{}])[0]
    who = str(agent.get("who", {}).get("display", "?"))
    purposes = [
        c.get("code", "") for p in event.get("purposeOfEvent", []) for c in p.get("coding", [])
    ]
    outcome = "disclosed" if event.get("outcome") == "0" else "denied"
    what: list[str] = []
    why: set[str] = set()
    for entity in event.get("entity", [])[1:]:
        what.append(str(entity.get("what", {}).get("reference", "?")))
        for detail in entity.get("detail", []):
            if detail.get("type") in ("consent", "rule"):
                why.add(str(detail.get("valueString")))
    action = ",".join(s.get("code", "") for s in event.get("subtype", []))
    return (
        str(event.get("recorded", ""))[:19].replace("T", " "),
        who,
        ",".join(purposes) or "-",
        f"{action} {outcome}",
        "\n".join(what),
        ", ".join(sorted(why)),
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def audit(
        cpr: str = typer.Option(..., help="the citizen's CPR number (10 digits)"),
        limit: int = typer.Option(200, help="at most this many events"),
    ) -> None:
        """Who has looked at (or been refused) a citizen's data, newest first."""
        if not (len(cpr) == 10 and cpr.isdigit()):
            typer.echo("--cpr takes 10 digits", err=True)
            raise typer.Exit(2)
        settings = Settings()

        async def run() -> list[dict[str, Any]]:
            database = Database(settings.database_url)
            try:
                await database.migrate()
                return await audit_trail(
                    Store(database, fhir_base=settings.fhir_base), cpr, limit=limit
                )
            finally:
                await database.dispose()

        events = asyncio.run(run())
        console = Console()
        if not events:
            console.print("no AuditEvents for that citizen")
            return
        table = Table(title=f"Who has looked ({len(events)} events)")
        for column in ("when (UTC)", "participant", "purpose", "what happened", "resources", "why"):
            table.add_column(column, overflow="fold")
        for event in events:
            table.add_row(*_row(event))
        console.print(table)
