"""``brobygger audit --cpr CPR``: who has looked at a citizen's data, as a readable table."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from gateway.cli_output import fail, print_json, print_table
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
        " ".join(what),
        ", ".join(sorted(why)),
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def audit(
        cpr: str = typer.Option(..., help="the citizen's CPR number (10 digits)"),
        limit: int = typer.Option(200, help="at most this many events"),
        as_json: bool = typer.Option(
            False, "--json", help="the AuditEvents as JSON instead of a table"
        ),
    ) -> None:
        """Who has looked at (or been refused) a citizen's data, newest first.

        In a pipe: tab-separated lines, one event per line (the first line names the columns).
        """
        if not (len(cpr) == 10 and cpr.isdigit()):
            raise fail("--cpr takes 10 digits", 2)
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
        if as_json:
            print_json({"events": events})
            return
        print_table(
            ("when (UTC)", "participant", "purpose", "what happened", "resources", "why", "id"),
            [(*_row(event), str(event.get("id", ""))) for event in events],
            title=f"Who has looked ({len(events)} events)",
            empty="no AuditEvents for that citizen",
        )
