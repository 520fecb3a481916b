"""``brobygger participants …`` against a SQLite file and ``brobygger token`` over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway import cli as root
from gateway.app import create_app
from gateway.auth.keys import generate_signing_key, public_jwks, read_private_key
from gateway.participants import cli
from gateway.settings import Settings

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("BROBYGGER_BASE_URL", "http://testserver")
    monkeypatch.setenv("BROBYGGER_ENVIRONMENT", "test")
    return Settings()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(root.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_add_list_show_rotate(env: Settings) -> None:
    code, out, err = invoke(
        "participants", "add", "odense-ortopaedi", "--kind", "hospital",
        "--identifier", "sor=123456789012", "--identifier", "ean=5790000121526",
        "--display", "Odense Universitetshospital", "--generate-key",
    )  # fmt: skip
    assert code == 0, err
    assert "Organization/org-odense-ortopaedi" in out
    key_file = env.keys_dir / "odense-ortopaedi.jwk.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (env.keys_dir / "odense-ortopaedi.enc.jwk.json").exists()
    first_kid = read_private_key(key_file).kid

    code, out, _ = invoke("participants", "list")
    assert code == 0 and "odense-ortopaedi" in out and "ean=5790000121526" in out
    # In a pipe: a header line, then one participant per line, tab-separated.
    [row] = [line for line in out.splitlines() if line.startswith("odense-ortopaedi\t")]
    assert row.split("\t")[:2] == ["odense-ortopaedi", "hospital"]
    code, out, _ = invoke("participants", "list", "--json")
    [listed] = json.loads(out)["participants"]
    assert listed["name"] == "odense-ortopaedi" and "d" not in listed["jwks"]["keys"][0]

    code, out, _ = invoke("participants", "show", "odense-ortopaedi")
    shown = json.loads(out)
    assert shown["kind"] == "hospital"
    assert shown["jwks"]["keys"][0]["kid"] == first_kid
    assert "d" not in shown["jwks"]["keys"][0]

    # One rotation command: `keys participant --rotate` (rotate-key is gone).
    code, _, _ = invoke("participants", "rotate-key", "odense-ortopaedi")
    assert code == 2
    code, out, err = invoke("keys", "participant", "odense-ortopaedi", "--rotate")
    assert code == 0, err
    new_kid = read_private_key(key_file).kid
    assert new_kid != first_kid
    assert f"sig {new_kid}  (current)" in out
    assert f"sig {first_kid}\n" in out + "\n"  # still registered, no longer current
    code, out, _ = invoke("participants", "show", "odense-ortopaedi")
    kids = [k["kid"] for k in json.loads(out)["jwks"]["keys"] if k.get("use", "sig") == "sig"]
    assert kids[:2] == [new_kid, first_kid]


def test_add_with_a_jwks_file_and_set_jwks(env: Settings, tmp_path: Path) -> None:
    jwks_file = tmp_path / "employer.jwks.json"
    jwks_file.write_text(json.dumps(public_jwks([generate_signing_key("RS384")])))
    code, _, err = invoke(
        "participants", "add", "fabrik", "--kind", "employer", "--identifier", "cvr=35411003",
        "--jwks", str(jwks_file), "--endpoint", "https://fabrik.example/fhir",
    )  # fmt: skip
    assert code == 0, err
    assert not (env.keys_dir / "fabrik.jwk.json").exists()

    replacement = generate_signing_key("ES384")
    jwk_file = tmp_path / "one.jwk.json"
    jwk_file.write_text(json.dumps(public_jwks([replacement])["keys"][0]))
    code, out, err = invoke("participants", "set-jwks", "fabrik", "--jwks", str(jwk_file))
    assert code == 0, err
    assert replacement.kid in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "hospital", "--identifier", "ean=5790000121527", "--generate-key"], "EAN"),
        (["--kind", "pharmacy", "--generate-key"], "kind"),
        (["--kind", "hospital", "--identifier", "cpr=1507791235", "--generate-key"], "system"),
        (["--kind", "hospital"], "--generate-key"),
    ],
)
def test_add_refusals(env: Settings, args: list[str], message: str) -> None:
    code, _, err = invoke("participants", "add", "x-hospital", *args)
    assert code == 1
    assert message in err


def test_duplicate_name_is_refused(env: Settings) -> None:
    assert invoke("participants", "add", "gp-one", "--kind", "gp", "--generate-key")[0] == 0
    code, _, err = invoke("participants", "add", "gp-one", "--kind", "gp", "--generate-key")
    assert code == 1 and "already exist" in err


def test_show_unknown_participant(env: Settings) -> None:
    code, _, err = invoke("participants", "show", "nobody")
    assert code == 1 and "not registered" in err


@pytest.fixture
def gateway(env: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The real app (demo participants) behind the CLI's HTTP client."""
    app = create_app(env.model_copy(update={"demo": True}))
    with TestClient(app, base_url="http://testserver") as client:

        @contextmanager
        def http_client() -> Iterator[TestClient]:
            yield client

        monkeypatch.setattr(cli, "_http_client", http_client)
        yield client


def test_token_prints_the_access_token_last(gateway: TestClient) -> None:
    code, out, err = invoke(
        "token", "--as", "jobcenter-aarhus", "--purpose", "sickness-benefit-follow-up",
        "--scope", "system/*.read system/Task.cu", "--url", "http://testserver",
    )  # fmt: skip
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert "system/Task.cu" in err
    response = gateway.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_token_failure_exits_non_zero_with_the_oauth_error(gateway: TestClient) -> None:
    code, out, err = invoke("token", "--as", "jobcenter-aarhus", "--purpose", "marketing")
    assert code == 1
    assert out == ""
    assert "invalid_request" in err and "purpose" in err


def test_token_for_an_unknown_participant_says_so(gateway: TestClient) -> None:
    code, _, err = invoke("token", "--as", "someone-else")
    assert code == 1 and "'someone-else' is not a registered participant" in err


def test_token_for_a_participant_without_a_key_file(gateway: TestClient, env: Settings) -> None:
    (env.keys_dir / "lys-montage.jwk.json").unlink()
    code, _, err = invoke("token", "--as", "lys-montage")
    assert code == 1 and "no private key for 'lys-montage'" in err


def test_set_endpoint_and_back_to_the_mailbox(env: Settings) -> None:
    code, _, err = invoke(
        "participants", "add", "odense-genoptraening", "--kind", "rehab-unit",
        "--identifier", "sor=123456789013", "--display", "Odense Kommune, Genoptræning",
        "--generate-key",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = invoke(
        "participants", "set-endpoint", "odense-genoptraening", "https://rehab.example/inbox"
    )
    assert code == 0, err
    assert out.strip() == "odense-genoptraening: https://rehab.example/inbox"
    shown = json.loads(invoke("participants", "show", "odense-genoptraening")[1])
    assert shown["endpoint"] == "https://rehab.example/inbox" and shown["mailbox"] is False

    code, out, _ = invoke("participants", "set-endpoint", "odense-genoptraening", "--mailbox")
    assert code == 0 and out.strip() == "odense-genoptraening: mailbox"
    shown = json.loads(invoke("participants", "show", "odense-genoptraening")[1])
    assert shown["endpoint"] is None and shown["mailbox"] is True

    code, _, err = invoke("participants", "set-endpoint", "odense-genoptraening", "ftp://x")
    assert code == 1 and "endpoint must be an http(s) URL" in err
    code, _, err = invoke("participants", "set-endpoint", "odense-genoptraening")
    assert code == 1 and "either an endpoint URL or --mailbox" in err
    code, _, err = invoke("participants", "set-endpoint", "nobody", "--mailbox")
    assert code == 1 and "not registered" in err
