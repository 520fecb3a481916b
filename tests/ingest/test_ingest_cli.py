"""``brobygger map`` and ``brobygger import``: exit codes, JSON on stdout, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_support import SAMPLES, all_samples
from typer.testing import CliRunner

from gateway.cli import app

runner = CliRunner()
CASE = SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml"


def test_map_prints_a_collection_bundle() -> None:
    result = runner.invoke(app, ["map", "--format", "jobcentre-case", str(CASE)])
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert all("request" not in e for e in bundle["entry"])


@pytest.mark.parametrize(
    ("content", "args", "expression"),
    [
        (
            CASE.read_bytes().replace(b"<CPR>1507791235", b"<CPR>3307791235"),
            [],
            "/Sygedagpengesag/Borger/CPR",
        ),
        (b"<not-xml", [], "/"),
        (CASE.read_bytes(), ["--format", "rehab-plan"], "/*"),
    ],
)
def test_map_prints_an_outcome_and_exits_2(
    tmp_path: Path, content: bytes, args: list[str], expression: str
) -> None:
    path = tmp_path / "doc.xml"
    path.write_bytes(content)
    result = runner.invoke(app, ["map", *args, str(path)])
    assert result.exit_code == 2
    outcome = json.loads(result.stdout)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [expression]
    assert outcome["issue"][0]["diagnostics"]


def test_import_twice_reports_everything_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/import.db")
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<nope/>")
    first = runner.invoke(app, ["import", str(SAMPLES), str(broken)])
    assert first.exit_code == 1, first.output
    n = len(all_samples())
    # Not a terminal: tab-separated lines, one record each.
    assert f"\naccepted\t{n}\n" in first.stdout
    assert "\nrejected\t1\n" in first.stdout
    assert "broken.xml" in first.stdout and "unknown document" in first.stdout
    second = runner.invoke(app, ["import", str(SAMPLES)])
    assert second.exit_code == 0, second.output
    assert f"\nunchanged\t{n}\n" in second.stdout
    assert "\naccepted\t0\n" in second.stdout
    third = runner.invoke(app, ["import", "--json", str(SAMPLES)])
    assert third.exit_code == 0, third.output
    summary = json.loads(third.stdout)
    assert len(summary["unchanged"]) == n and summary["accepted"] == summary["rejected"] == []


def test_import_of_nothing_warns_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/import.db")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["import", str(empty)])
    assert result.exit_code == 1
    assert "no *.xml documents found" in result.stderr and str(empty) in result.stderr
    result = runner.invoke(app, ["import", str(tmp_path / "nosuch")])
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
