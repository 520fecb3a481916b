"""`brobygger audit --cpr` shows the citizen who looked, and who was refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.cli import app as cli
from gateway.settings import Settings

CPR = "0101801234"


def token(client: TestClient, settings: Settings, name: str, purpose: str) -> dict[str, str]:
    key = read_private_key(private_key_path(settings.keys_dir, name))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_client_assertion(key, name, settings.token_url),
        "scope": "system/*.read system/*.write",
        "purpose": purpose,
    }
    response = client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_audit_lists_disclosures_and_denials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    settings = Settings(
        environment="test",
        database_url=url,
        base_url="http://testserver",
        keys_dir=tmp_path / "keys",
        demo=True,
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        hospital = token(client, settings, "auh-ortopaedi", "TREAT")
        jobcentre = token(client, settings, "jobcenter-aarhus", "sickness-benefit-follow-up")
        patient = client.post(
            "/fhir/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": CPR}],
            },
            headers=hospital,
        ).json()["id"]
        plan = client.post(
            "/fhir/ServiceRequest",
            json={
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": f"Patient/{patient}"},
            },
            headers=hospital,
        ).json()["id"]
        assert client.get(f"/fhir/ServiceRequest/{plan}", headers=hospital).status_code == 200
        assert client.get(f"/fhir/ServiceRequest/{plan}", headers=jobcentre).status_code == 404

    monkeypatch.setenv("BROBYGGER_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps to the terminal width
    result = CliRunner().invoke(cli, ["audit", "--cpr", CPR])
    assert result.exit_code == 0, result.output
    assert "auh-ortopaedi" in result.output and "jobcenter-aarhus" in result.output
    assert "disclosed" in result.output and "denied" in result.output
    assert f"ServiceRequest/{plan}" in result.output
    bad = CliRunner().invoke(cli, ["audit", "--cpr", "12ab"])
    assert bad.exit_code == 2
