"""``brobygger figures --as P --month YYYY-MM [--municipality] [--json] [--chart out.png]``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.errors import GatewayError
from gateway.figures._compute import Month
from gateway.figures._scope import municipality_subject
from gateway.figures._service import all_reports
from gateway.figures._table import Row, rows_of, shown
from gateway.participants.directory import ParticipantDirectory
from gateway.participants.identifiers import MUNICIPALITY
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store


async def _reports(as_: str, month: Month, municipality: bool) -> list[dict[str, Any]]:
    settings = Settings()
    database = Database(settings.database_url)
    try:
        await database.migrate()
        directory = ParticipantDirectory(database)
        caller = await directory.get(as_)
        subject = None
        if municipality:
            code = caller.identifier(MUNICIPALITY)
            subject = municipality_subject(code) if code else "municipality"
        store = Store(database, fhir_base=settings.fhir_base)
        return await all_reports(store, directory, caller, month, subject)
    finally:
        await database.dispose()


def register(app: typer.Typer) -> None:
    @app.command("figures")
    def figures_command(
        as_: str = typer.Option(..., "--as", help="the participant whose figures to show"),
        month: str = typer.Option(..., help="the calendar month, YYYY-MM"),
        municipality: bool = typer.Option(
            False, "--municipality", help="its municipality's job centre and rehab unit together"
        ),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
        chart: Path | None = typer.Option(None, help="also draw a bar chart into this PNG file"),
    ) -> None:
        """Managers' key figures for one month (aggregates; cells under 5 citizens hidden)."""
        try:
            period = Month.parse(month)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--month") from None
        try:
            reports = asyncio.run(_reports(as_, period, municipality))
        except GatewayError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        rows: list[Row] = [row for report in reports for row in rows_of(report)]
        scope = "kommunen" if municipality else as_
        title = f"Nøgletal {period} for {scope}"
        if chart is not None:
            from gateway.figures.chart import chart_png  # matplotlib only when asked for

            chart.write_bytes(chart_png(rows, title))
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "month": str(period),
                        "participant": as_,
                        "municipality": municipality,
                        "figures": [r.to_json() for r in rows],
                    },
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return
        table = Table(title=title)
        for column in ("nøgletal", "borgere", "værdi"):
            table.add_column(column, overflow="fold")
        for row in rows:
            people = "-" if row.suppressed or row.population is None else str(row.population)
            table.add_row(row.label, people, shown(row))
        Console(width=120).print(table)
        if chart is not None:
            typer.echo(f"chart written to {chart}")
