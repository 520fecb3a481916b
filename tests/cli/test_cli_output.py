"""The CLI in a pipe and in trouble: grep finds ids, refusals print literally, config errors.

The pipe tests run the real console script in a shell pipeline (``brobygger … | grep``), so
stdout is a pipe exactly as a user's is.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from live.harness import LiveGateway, serve
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway import cli_output
from gateway.app import create_app
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.cli import app
from gateway.messaging import records
from gateway.search.dates import utc_now
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

BROBYGGER = str(Path(sys.executable).parent / "brobygger")
CPR = "0101801234"
GGOP = Path(__file__).parents[1] / "data/rehab-plan/sample-ggop-shoulder-electrician/input.xml"


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROBYGGER_")}
    env.update(
        BROBYGGER_DATABASE_URL=settings.database_url,
        BROBYGGER_KEYS_DIR=str(settings.keys_dir),
        BROBYGGER_BASE_URL=settings.base_url,
        BROBYGGER_ENVIRONMENT="test",
        COLUMNS="80",  # the width that used to fold ids over several lines
    )
    return env


def _pipe(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The ids are passed as arguments of the shell, never pasted into its text.
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
    )


def _token(client: TestClient, settings: Settings, name: str, purpose: str) -> dict[str, str]:
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


async def _seed_message(settings: Settings, message_id: str) -> None:
    database = Database(settings.database_url)
    store = Store(database, fhir_base=settings.fhir_base)
    record = records.MessageRecord(
        key=f"k-{message_id}",
        sender="auh-ortopaedi",
        message_id=message_id,
        event="rehab-plan",
        received_at=utc_now(),
        content_sha256="0" * 64,
        bundle={"resourceType": "Bundle", "type": "message", "entry": []},
        signed="a.b.c",
        ack_code="ok",
        ack={},
        resources=[],
        reply_to=None,
    )
    try:
        async with store.write() as writer:
            await records.insert_message(writer, record)
            for receiver, role in (("aarhus-genoptraening", "primary"), ("jobcenter-aarhus", "cc")):
                await records.insert_delivery(
                    writer, record.key, receiver, role=role, mode="mailbox"
                )
    finally:
        await database.dispose()


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Demo participants, a disclosure and a denial about CPR, one message with 2 deliveries."""
    settings = Settings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/pipes.db",
        base_url="http://testserver",
        keys_dir=tmp_path / "keys",
        demo=True,
    )
    ids: dict[str, str] = {"message": str(uuid.uuid4())}
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        hospital = _token(client, settings, "auh-ortopaedi", "TREAT")
        jobcentre = _token(client, settings, "jobcenter-aarhus", "sickness-benefit-follow-up")
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": CPR}],
        }
        ids["patient"] = client.post("/fhir/Patient", json=patient, headers=hospital).json()["id"]
        plan = {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{ids['patient']}"},
        }
        ids["plan"] = client.post("/fhir/ServiceRequest", json=plan, headers=hospital).json()["id"]
        assert client.get(f"/fhir/ServiceRequest/{ids['plan']}", headers=hospital).is_success
        denied = client.get(f"/fhir/ServiceRequest/{ids['plan']}", headers=jobcentre)
        assert denied.status_code == 404
    asyncio.run(_seed_message(settings, ids["message"]))
    yield settings, ids


@pytest.mark.slow
def test_grep_finds_ids_in_every_listing(seeded: tuple[Settings, dict[str, str]]) -> None:
    settings, ids = seeded
    env = _env(settings)

    messages = _pipe(f'{BROBYGGER} messages | grep -F "$MESSAGE_ID"', {**env, **_ids(ids)})
    assert messages.returncode == 0, messages.stderr
    lines = messages.stdout.splitlines()
    assert len(lines) == 2  # one line per delivery, the whole id on each
    assert all(ids["message"] in line and "\tpending\t" in line for line in lines)
    counted = _pipe(f"{BROBYGGER} messages | grep -c pending", env)
    assert counted.stdout.strip() == "2"

    listed = _pipe(f"{BROBYGGER} participants list | grep -F 5790000121526", env)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith("auh-ortopaedi\thospital\t")

    audit = _pipe(f'{BROBYGGER} audit --cpr {CPR} | grep -F "ServiceRequest/$PLAN_ID"', {
        **env, **_ids(ids)
    })  # fmt: skip
    assert audit.returncode == 0, audit.stderr
    outcomes = {line.split("\t")[3].split()[-1] for line in audit.stdout.splitlines()}
    assert outcomes == {"disclosed", "denied"}
    assert all(len(line.split("\t")) == 7 for line in audit.stdout.splitlines())


def _ids(ids: dict[str, str]) -> dict[str, str]:
    return {"MESSAGE_ID": ids["message"], "PLAN_ID": ids["plan"], "PATIENT_ID": ids["patient"]}


def test_every_listing_has_json(
    seeded: tuple[Settings, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    settings, ids = seeded
    for key, value in _env(settings).items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    out = runner.invoke(app, ["messages", "--json"])
    assert json.loads(out.stdout)["messages"][0]["message_id"] == ids["message"]
    out = runner.invoke(app, ["participants", "list", "--json"])
    assert "auh-ortopaedi" in {p["name"] for p in json.loads(out.stdout)["participants"]}
    out = runner.invoke(app, ["audit", "--cpr", CPR, "--json"])
    events = json.loads(out.stdout)["events"]
    assert {e["resourceType"] for e in events} == {"AuditEvent"} and len(events) >= 2


def test_texts_are_printed_literally(capsys: pytest.CaptureFixture[str]) -> None:
    xpath = "[/Emessage/RehabilitationPlan/Sender]"
    exit_ = cli_output.fail(f"the authenticated participant is not the sender  {xpath}")
    assert exit_.exit_code == 1
    cli_output.say(f"[bold]{xpath}[/bold]", style="red")
    cli_output.print_table(("a", "b"), [("[red]x[/red]", f"tab\there {xpath}")])
    out, err = capsys.readouterr()
    assert err == f"error: the authenticated participant is not the sender  {xpath}\n"
    assert out.splitlines() == [
        f"[bold]{xpath}[/bold]",
        "a\tb",
        f"[red]x[/red]\ttab here {xpath}",
    ]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveGateway]:
    settings = Settings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/live.db",
        base_url="http://testserver",
        keys_dir=tmp_path / "keys",
        delivery_in_process=False,
    )
    with serve(settings) as gateway:
        yield gateway


@pytest.mark.slow
def test_send_prints_a_refusal_with_an_xpath_literally(live: LiveGateway) -> None:
    # The rehab unit sends the hospital's plan: refused, and the reason names the XPath.
    env = _env(live.settings)
    result = subprocess.run(
        [BROBYGGER, "send", "--as", "aarhus-genoptraening", "--to", "auh-ortopaedi", str(GGOP)],
        env={**env, "BROBYGGER_BASE_URL": live.base_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    assert result.stdout.startswith("fatal-error  MessageHeader.id ")
    assert "[/Emessage/" in result.stdout  # the XPath as the gateway wrote it


@pytest.mark.parametrize(
    ("variables", "command", "names"),
    [
        ({"BROBYGGER_LOG_LEVEL": "LOUD"}, ["serve", "--port", "9"], "BROBYGGER_LOG_LEVEL"),
        ({"BROBYGGER_ENVIRONMENT": "production"}, ["db", "upgrade"], "BROBYGGER_DATABASE_URL"),
        ({"BROBYGGER_ENVIRONMENT": "staging"}, ["db", "upgrade"], "BROBYGGER_ENVIRONMENT"),
        ({"BROBYGGER_AUDIT_WRITE": "later"}, ["messages"], "'sync' or 'batched'"),
    ],
)
def test_a_configuration_error_is_one_line_and_exit_2(
    tmp_path: Path, variables: dict[str, str], command: list[str], names: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROBYGGER_")}
    env["BROBYGGER_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    if variables.get("BROBYGGER_ENVIRONMENT") == "production":
        del env["BROBYGGER_DATABASE_URL"]
    result = subprocess.run(
        [BROBYGGER, *command],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("configuration error: ") and names in line
    assert result.stdout == ""


def test_production_without_keys_stops_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROBYGGER_")}
    env.update(
        BROBYGGER_ENVIRONMENT="production",
        BROBYGGER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db",
        BROBYGGER_KEYS_DIR=str(tmp_path / "keys"),
    )
    result = subprocess.run(
        [BROBYGGER, "serve", "--host", "127.0.0.1", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "production needs the gateway's keys" in line and "brobygger keys gateway" in line


def test_send_takes_one_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(tmp_path / "keys"))
    result = CliRunner().invoke(
        app, ["send", "--as", "auh-ortopaedi", "--to", "a", "--to", "b", str(GGOP)]
    )
    assert result.exit_code == 1
    assert result.stderr == "error: give one receiver: --to NAME (more receivers: --cc NAME)\n"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["send"], "--to NAME"),
        (["participants", "add"], "--identifier ALIAS=VALUE"),
        (["token"], "--as NAME"),
        (["keys", "participant"], "--retire KID"),
        (["messages"], "--status STATUS"),
    ],
)
def test_help_names_the_values(command: list[str], shown: str) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert shown in result.stdout
    assert "<" not in result.stdout.split("Options:", 1)[1]  # no <str>, <list[str]> metavars
    assert "``" not in result.stdout  # no reStructuredText


def test_serve_on_all_interfaces_keeps_a_usable_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.0.0.0 is where a container listens, never an address for the token audience."""
    import uvicorn

    seen: dict[str, str | None] = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda *_a, **_k: seen.update(base=os.environ.get("BROBYGGER_BASE_URL"))
    )
    monkeypatch.delenv("BROBYGGER_BASE_URL", raising=False)
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "8080"])  # noqa: S104
    assert result.exit_code == 0, result.output
    assert seen["base"] is None  # the settings' default (or the image's ENV) stays
    monkeypatch.delenv("BROBYGGER_BASE_URL", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "127.0.0.1", "--port", "8099"])
    assert result.exit_code == 0 and seen["base"] == "http://127.0.0.1:8099"
