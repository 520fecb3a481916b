"""``brobygger patients duplicates`` and ``brobygger patients merge KEEP DUPLICATE``."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

import typer

from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.store import patient_merge
from gateway.store.database import Database
from gateway.store.repository import Store

patients_app = typer.Typer(no_args_is_help=True, help="Citizens (Patients): duplicates, merge")


async def _with_store(work: Any) -> Any:
    settings = Settings()
    database = Database(settings.database_url)
    try:
        await database.migrate()
        return await work(Store(database, fhir_base=settings.fhir_base))
    finally:
        await database.dispose()


@patients_app.command("duplicates")
def duplicates(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List Patients that share a CPR-system identifier (stored before migration 0004)."""
    found: list[patient_merge.Duplicate] = asyncio.run(_with_store(patient_merge.duplicates))
    if as_json:
        typer.echo(json.dumps([_as_dict(d) for d in found], indent=2))
        return
    if not found:
        typer.echo("no duplicates")
        return
    for d in found:
        typer.echo(f"{d.system} {d.masked}: {' '.join(d.patient_ids)}")


def _as_dict(d: patient_merge.Duplicate) -> dict[str, Any]:
    return {"system": d.system, "identifier": d.masked, "patients": d.patient_ids}


@patients_app.command("merge")
def merge(
    keep: Annotated[str, typer.Argument(help="the Patient id that stays")],
    duplicate: Annotated[str, typer.Argument(help="the Patient id merged into it")],
) -> None:
    """Merge DUPLICATE into KEEP: history kept, references moved, the merge audited."""
    operator = f"operator:{os.environ.get('USER', 'cli')}"

    async def work(store: Store) -> dict[str, Any]:
        return await patient_merge.merge(store, keep, duplicate, operator=operator)

    try:
        done = asyncio.run(_with_store(work))
    except GatewayError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"merged {done['retired']} into {done['kept']}; "
        f"{len(done['repointed'])} resources now refer to {done['kept']}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(patients_app, name="patients")
