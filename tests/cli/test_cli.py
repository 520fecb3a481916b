"""The `brobygger` commands that are not covered elsewhere: db upgrade, keys gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.store.database import head_revision


def test_db_upgrade_reports_the_head_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    # The head, whichever it is (helpers add migrations in parallel; the lead chains them).
    assert f"database at revision {head_revision()}" in result.output
    assert (tmp_path / "cli.db").exists()


def test_gateway_key_is_created_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(tmp_path / "keys"))
    first = CliRunner().invoke(app, ["keys", "gateway"])
    assert first.exit_code == 0 and first.output.startswith("created")
    second = CliRunner().invoke(app, ["keys", "gateway"])
    assert second.exit_code == 0 and second.output.startswith("kept")
    assert all(line.startswith("created ") for line in first.output.splitlines())
    assert all(line.startswith("kept ") for line in second.output.splitlines())

    def kids(output: str) -> list[str]:
        return [line.rsplit("kid ", 1)[1] for line in output.splitlines()]

    assert kids(first.output) == kids(second.output)
    for name in ("gateway-signing.jwk.json", "gateway-messaging.enc.jwk.json"):
        key_file = tmp_path / "keys" / name
        assert key_file.stat().st_mode & 0o777 == 0o600
