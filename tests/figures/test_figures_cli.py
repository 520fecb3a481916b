"""``brobygger figures``: the table, JSON and a PNG chart from a generated population."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from figures_support import seed
from typer.testing import CliRunner

from gateway.cli import app
from gateway.participants.demo import ensure_demo_participants
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store


async def _prepare(settings: Settings) -> None:
    database = Database(settings.database_url)
    try:
        await database.migrate()
        store = Store(database, fhir_base=settings.fhir_base)
        await ensure_demo_participants(settings, database, store)
        await seed(store, jobcentre_cases=6, unit_plans=2)
    finally:
        await database.dispose()


@pytest.fixture
def prepared(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("BROBYGGER_VAR_DIR", str(settings.var_dir))
    asyncio.run(_prepare(settings))
    return settings


def test_json_table_and_chart(prepared: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["figures", "--as", "jobcenter-aarhus", "--month", "2026-11", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = {(f["measure"], f["stratum"]): f for f in json.loads(result.output)["figures"]}
    assert figures[("case-inflow", None)]["value"] == 6
    assert figures[("sickness-benefit-citizens", None)]["value"] == 6
    town = runner.invoke(
        app,
        ["figures", "--as", "jobcenter-aarhus", "--month", "2026-11", "--municipality", "--json"],
    )
    rows = {(f["measure"], f["group"]): f for f in json.loads(town.output)["figures"]}
    assert rows[("new-rehab-plans", "plans")]["suppressed"] is True  # the unit's 2
    chart = tmp_path / "figures.png"
    table = runner.invoke(
        app, ["figures", "--as", "jobcenter-aarhus", "--month", "2026-11", "--chart", str(chart)]
    )
    assert table.exit_code == 0, table.output
    assert "Tilgang af sager" in table.output and "ingen borgere" in table.output
    town_table = runner.invoke(
        app, ["figures", "--as", "jobcenter-aarhus", "--month", "2026-11", "--municipality"]
    )
    assert "skjult (< 5 borgere)" in town_table.output  # the unit's 2 new plans
    assert chart.read_bytes().startswith(b"\x89PNG") and chart.stat().st_size > 5000


def test_bad_month_and_unknown_participant(prepared: Settings) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(app, ["figures", "--as", "jobcenter-aarhus", "--month", "2026-13"]).exit_code
        == 2
    )
    unknown = runner.invoke(app, ["figures", "--as", "nobody", "--month", "2026-11"])
    assert unknown.exit_code == 1 and "not registered" in unknown.output


def test_the_inline_chart_escapes_stored_codes() -> None:
    """A stratum is a stored code (any participant writes Tasks): never markup in the SVG."""
    from gateway.figures._table import Row
    from gateway.figures.chart import chart_svg

    evil = "--><script>alert(1)</script><!--"
    svg = chart_svg(
        [Row("deadlines-on-time", "Frister", "on-time", evil, 10, 5, 0.5, None, False)], "t"
    )
    assert "<script" not in svg and svg.startswith("<svg")
