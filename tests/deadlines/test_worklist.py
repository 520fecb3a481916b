"""Worklists: ``GET /fhir/Task?owner=…&status=…&period=le…&_sort=period`` and the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.settings import Settings

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_bytes()
OPEN = "requested,in-progress"
JOBCENTRE = "Organization/org-jobcenter-aarhus"


def _codes(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for entry in bundle.get("entry", []):
        task = entry["resource"]
        out.append((task["restriction"]["period"]["end"], task["code"]["coding"][0]["code"]))
    return out


async def _load_ole(as_: Any) -> Any:
    jobcentre = await as_("jobcenter-aarhus")
    response = await jobcentre.client.post(
        "/ingest/jobcentre-case",
        content=OLE,
        headers={**jobcentre.headers, "Content-Type": "application/xml"},
    )
    assert response.status_code in (200, 201), response.text
    return jobcentre


async def test_the_caseworkers_worklist_by_due_date(as_: Any) -> None:
    jobcentre = await _load_ole(as_)
    # Due by the end of February, soonest first (the clock says 2026-11-25).
    response = await jobcentre.get(
        "Task", owner=JOBCENTRE, status=OPEN, period="le2027-02-28", _sort="period"
    )
    assert response.status_code == 200, response.text
    assert _codes(response.json()) == [
        ("2026-11-23", "broad-assessment"),
        ("2027-02-28", "follow-ups-six-months"),
    ]
    # Overdue today: due before 2026-11-25, mapped on the gateway's clock, so flagged.
    response = await jobcentre.get(
        "Task", owner=JOBCENTRE, status=OPEN, period="lt2026-11-25", _sort="period"
    )
    overdue = response.json()["entry"]
    assert [e["resource"]["businessStatus"]["coding"][0]["code"] for e in overdue] == ["overdue"]
    # Everything open, soonest first; the reassessment last.
    everything = _codes(
        (await jobcentre.get("Task", owner=JOBCENTRE, status=OPEN, _sort="period")).json()
    )
    assert [due for due, _ in everything] == sorted(due for due, _ in everything)
    assert everything[-1] == ("2027-08-31", "follow-ups-twelve-months")
    assert ("2027-03-31", "reassessment") in everything


@pytest.mark.parametrize("name", ["lys-montage", "aarhus-genoptraening", "auh-ortopaedi"])
async def test_nobody_else_sees_the_caseworkers_worklist(as_: Any, name: str) -> None:
    await _load_ole(as_)
    other = await as_(name)
    response = await other.get("Task", owner=JOBCENTRE, status=OPEN, _sort="period")
    assert response.status_code == 200
    assert response.json().get("total", 0) == 0 and not response.json().get("entry")


async def test_brobygger_worklist_prints_it(
    as_: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _load_ole(as_)
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", settings.database_url)
    runner = CliRunner()

    async def invoke(args: list[str]) -> Any:
        # The CLI runs its own event loop: in a thread, beside this test's.
        return await asyncio.to_thread(runner.invoke, cli, args)

    result = await invoke(["worklist", "--as", "jobcenter-aarhus", "--on", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "broad-assessment" in result.output and "reassessment" in result.output
    overdue = await invoke(
        ["worklist", "--as", "jobcenter-aarhus", "--overdue", "--on", "2026-11-25"]
    )
    assert overdue.exit_code == 0, overdue.output
    assert "broad-assessment" in overdue.output and "reassessment" not in overdue.output
    nothing = await invoke(["worklist", "--as", "lys-montage"])
    assert nothing.exit_code == 0 and "nothing open for lys-montage" in nothing.output
    refreshed = await invoke(["deadlines", "refresh", "--on", "2026-11-25"])
    assert refreshed.exit_code == 0, refreshed.output
    assert "1 owners notified" in refreshed.output
    again = await invoke(["deadlines", "refresh", "--on", "2026-11-25"])
    assert "0 owners notified" in again.output
