"""End to end over real HTTP: ``brobygger serve --demo`` and ``brobygger token`` as processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = {
        **os.environ,
        "BROBYGGER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/live.db",
        "BROBYGGER_KEYS_DIR": str(tmp_path / "keys"),
        "BROBYGGER_ENVIRONMENT": "development",
        "BROBYGGER_LOG_LEVEL": "WARNING",
    }
    env.pop("BROBYGGER_BASE_URL", None)
    server = subprocess.Popen(
        [str(BIN / "brobygger"), "serve", "--demo", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/fhir/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                _, err = server.communicate(timeout=5)
                pytest.fail(f"gateway did not start: {err.decode(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield base, env
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()


def _token(base: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "brobygger"), "token", "--url", base, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_token_against_a_running_gateway(live_gateway: tuple[str, dict[str, str]]) -> None:
    base, env = live_gateway
    result = _token(
        base, env, "--as", "jobcenter-aarhus", "--purpose", "sickness-benefit-follow-up"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    response = httpx.get(f"{base}/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert httpx.get(f"{base}/fhir/Patient").status_code == 401

    refused = _token(base, env, "--as", "jobcenter-aarhus", "--purpose", "nope")
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert "invalid_request" in refused.stderr


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_cli_tokens_follow_the_directory(live_gateway: tuple[str, dict[str, str]]) -> None:
    """The kinds' limits, and the portal vouching for the citizen of ``--patient``."""
    base, env = live_gateway
    hospital = _ok(_token(base, env, "--as", "auh-ortopaedi", "--scope", "system/*.write"))
    headers = {"Authorization": f"Bearer {hospital}"}
    ids = []
    for cpr in ("0101801234", "2211853346"):
        body = {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
        }
        created = httpx.post(f"{base}/fhir/Patient", json=body, headers=headers)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    ole, birgitte = ids

    # docs/consent.md: the operator's CLI signs the CPR number of that Patient for the portal.
    portal = _ok(
        _token(
            base, env, "--as", "borger-portal", "--purpose", "citizen-access",
            "--patient", f"Patient/{ole}",
        )
    )  # fmt: skip
    portal_headers = {"Authorization": f"Bearer {portal}"}
    assert httpx.get(f"{base}/fhir/Patient/{ole}", headers=portal_headers).status_code == 200
    assert httpx.get(f"{base}/fhir/Patient/{birgitte}", headers=portal_headers).status_code == 404
    # What a real portal does: its logged-in citizen's CPR number, no Patient id.
    _ok(_token(base, env, "--as", "borger-portal", "--cpr", "2211853346"))

    mismatch = _token(
        base, env, "--as", "borger-portal", "--cpr", "0101801234",
        "--patient", f"Patient/{birgitte}",
    )  # fmt: skip
    assert mismatch.returncode == 1 and mismatch.stdout == ""
    assert "invalid_request" in mismatch.stderr
    unknown = _token(base, env, "--as", "borger-portal", "--patient", "Patient/nobody")
    assert unknown.returncode == 1 and "Patient/nobody" in unknown.stderr

    employer_write = _token(base, env, "--as", "lys-montage", "--scope", "system/*.write")
    assert employer_write.returncode == 1 and "invalid_scope" in employer_write.stderr
    employer_treat = _token(base, env, "--as", "lys-montage", "--purpose", "TREAT")
    assert employer_treat.returncode == 1 and "invalid_scope" in employer_treat.stderr
    _ok(_token(base, env, "--as", "lys-montage", "--purpose", "round-table-meeting"))
