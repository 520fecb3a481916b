"""``brobygger keys participant``, ``messages``, ``deliver`` and ``send`` (on both stores).

(Named ``test_messaging_cli.py``: ``tests/cli/test_cli.py`` already owns the module name
``test_cli`` in pytest's rootdir-based import mode.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live.harness import LiveGateway, serve
from typer.testing import CliRunner

from gateway import cli as root
from gateway.auth.keys import private_key_path, read_private_key
from gateway.messaging import cli, envelope, records
from gateway.messaging.keys import signing_keys
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.search.dates import utc_now
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store

runner = CliRunner()
DATA = Path(__file__).parents[1] / "data"
GGOP = DATA / "rehab-plan" / "sample-ggop-shoulder-electrician" / "input.xml"
LAE285_REQUEST = DATA / "gp-statement" / "sample-lae285-request-ole" / "input.xml"
LAE285 = DATA / "gp-statement" / "sample-lae285-statement-ole" / "input.xml"
CASE = DATA / "jobcentre-case" / "sample-sag-ole-aarhus" / "input.xml"


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment: the test's database (SQLite or PostgreSQL) and keys dir."""
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("BROBYGGER_BASE_URL", settings.base_url)
    monkeypatch.setenv("BROBYGGER_ENVIRONMENT", "test")
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: one row per line
    return settings


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(root.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def participant(settings: Settings, name: str) -> Participant:
    async def get() -> Participant:
        database = Database(settings.database_url)
        try:
            return await ParticipantDirectory(database).get(name)
        finally:
            await database.dispose()

    return asyncio.run(get())


def kids(settings: Settings, name: str) -> list[tuple[str, str]]:
    return [(k.get("use", "sig"), k["kid"]) for k in participant(settings, name).jwks["keys"]]


def verifies(settings: Settings, name: str, token: str) -> bool:
    opened = envelope.open_envelope(token.encode("ascii"), [])
    try:
        envelope.verify(opened, signing_keys(participant(settings, name)), who=name)
    except envelope.WrongSigner:
        return False
    return True


# --- keys participant ------------------------------------------------------------------------


def test_keys_rotate_keeps_old_keys_verifying_until_retired(env: Settings) -> None:
    code, _, err = invoke(
        "participants", "add", "vejle-ortopaedi", "--kind", "hospital",
        "--identifier", "sor=123456789012", "--generate-key",
    )  # fmt: skip
    assert code == 0, err
    key_file = private_key_path(env.keys_dir, "vejle-ortopaedi")
    old = read_private_key(key_file)
    signed_before = envelope.sign(b'{"resourceType":"Bundle"}', old)
    assert verifies(env, "vejle-ortopaedi", signed_before)

    code, out, err = invoke("keys", "participant", "vejle-ortopaedi", "--rotate")
    assert code == 0, err
    new = read_private_key(key_file)
    assert new.kid != old.kid and key_file.stat().st_mode & 0o777 == 0o600
    assert f"sig {new.kid}  (current)" in out
    registered = kids(env, "vejle-ortopaedi")
    assert [k for use, k in registered if use == "sig"] == [new.kid, old.kid]
    assert sum(1 for use, _ in registered if use == "enc") == 1
    # A message signed before the rotation still verifies; so does one signed after it.
    assert verifies(env, "vejle-ortopaedi", signed_before)
    assert verifies(env, "vejle-ortopaedi", envelope.sign(b"{}", new))

    # The current key and the only encryption key are never retired.
    enc_kid = next(k for use, k in registered if use == "enc")
    for kid, why in ((str(new.kid), "current"), (enc_kid, "only encryption key")):
        code, _, err = invoke("keys", "participant", "vejle-ortopaedi", "--retire", kid)
        assert code == 1 and why in err
    code, _, err = invoke("keys", "participant", "vejle-ortopaedi", "--retire", "no-such-kid")
    assert code == 1 and "no registered key" in err

    code, out, err = invoke("keys", "participant", "vejle-ortopaedi", "--retire", str(old.kid))
    assert code == 0, err
    assert str(old.kid) not in out
    assert [k for use, k in kids(env, "vejle-ortopaedi") if use == "sig"] == [new.kid]
    assert not verifies(env, "vejle-ortopaedi", signed_before)
    assert verifies(env, "vejle-ortopaedi", envelope.sign(b"{}", new))

    # Now the new key is the only signing key: retiring it is refused even without a file.
    key_file.unlink()
    code, _, err = invoke("keys", "participant", "vejle-ortopaedi", "--retire", str(new.kid))
    assert code == 1 and "only signing key" in err


def test_keys_for_a_participant_registered_with_outside_keys(env: Settings, tmp_path: Path) -> None:
    from gateway.auth.keys import generate_signing_key, public_jwks

    outside = generate_signing_key("ES256")
    jwks_file = tmp_path / "outside.jwks.json"
    jwks_file.write_text(json.dumps(public_jwks([outside])))
    code, _, err = invoke(
        "participants", "add", "fabrik", "--kind", "employer",
        "--identifier", "cvr=35411003", "--jwks", str(jwks_file),
    )  # fmt: skip
    assert code == 0, err
    code, out, err = invoke("keys", "participant", "fabrik")
    assert code == 0, err
    sig = read_private_key(private_key_path(env.keys_dir, "fabrik"))
    enc = read_private_key(private_key_path(env.keys_dir, "fabrik", use="enc"))
    for path in (private_key_path(env.keys_dir, "fabrik"), env.keys_dir / "fabrik.enc.jwk.json"):
        assert path.stat().st_mode & 0o777 == 0o600
    assert kids(env, "fabrik") == [("sig", sig.kid), ("sig", outside.kid), ("enc", enc.kid)]
    # Again: nothing new, the same keys.
    code, again, _ = invoke("keys", "participant", "fabrik")
    assert code == 0 and again == out
    assert kids(env, "fabrik") == [("sig", sig.kid), ("sig", outside.kid), ("enc", enc.kid)]


def test_keys_refusals(env: Settings) -> None:
    code, _, err = invoke("keys", "participant", "nobody")
    assert code == 1 and "not registered" in err
    assert not private_key_path(env.keys_dir, "nobody").exists()  # nothing written
    code, _, err = invoke("keys", "participant", "nobody", "--rotate", "--retire", "x")
    assert code == 1 and "not both" in err
    code, _, err = invoke("keys", "participant", "nobody", "--alg", "HS256")
    assert code == 1 and "--alg" in err


# --- messages --------------------------------------------------------------------------------


async def _seed_messages(settings: Settings) -> None:
    database = Database(settings.database_url)
    await database.migrate()
    store = Store(database, fhir_base=settings.fhir_base)

    def record(key: str, sender: str, event: str) -> records.MessageRecord:
        return records.MessageRecord(
            key=key,
            sender=sender,
            message_id=f"id-{key}",
            event=event,
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
            await records.insert_message(writer, record("m-plan", "auh-ortopaedi", "rehab-plan"))
            await records.insert_delivery(
                writer, "m-plan", "aarhus-genoptraening", role="primary", mode="endpoint"
            )
            await records.insert_delivery(
                writer, "m-plan", "jobcenter-aarhus", role="cc", mode="mailbox"
            )
            await records.set_delivery(
                writer.conn,
                "m-plan",
                "aarhus-genoptraening",
                status="failed",
                attempts=12,
                last_error="HTTP 500 from https://rehab.example/fhir",
            )
            await records.insert_message(
                writer, record("m-req", "jobcenter-aarhus", "medical-statement-request")
            )
            await records.insert_delivery(
                writer, "m-req", "laegerne-soendergade", role="primary", mode="mailbox"
            )
    finally:
        await database.dispose()


def test_messages_lists_messages_and_their_deliveries(env: Settings) -> None:
    asyncio.run(_seed_messages(env))

    code, out, err = invoke("messages")
    assert code == 0, err
    # Not a terminal: a header, then one delivery per line with its message's columns.
    header, *rows = out.splitlines()
    assert header.split("\t")[3:7] == ["message id", "receiver", "role", "status"]
    assert all(len(row.split("\t")) == 9 for row in rows)
    assert "HTTP 500 from https://rehab.example/fhir" in out
    assert sum("\tmedical-statement-request\t" in row for row in rows) >= 1

    code, out, _ = invoke("messages", "--json")
    listed = {m["key"]: m for m in json.loads(out)["messages"]}
    assert set(listed) == {"m-plan", "m-req"}
    plan = {d["receiver"]: d for d in listed["m-plan"]["deliveries"]}
    assert plan["aarhus-genoptraening"]["status"] == "failed"
    assert plan["aarhus-genoptraening"]["attempts"] == 12
    assert plan["jobcenter-aarhus"] == {**plan["jobcenter-aarhus"], "role": "cc", "mode": "mailbox"}

    code, out, _ = invoke("messages", "--status", "failed", "--json")
    [failed] = json.loads(out)["messages"]
    assert failed["key"] == "m-plan"
    assert [d["receiver"] for d in failed["deliveries"]] == ["aarhus-genoptraening"]

    # --as: what the job centre sent and what it gets.
    code, out, _ = invoke("messages", "--as", "jobcenter-aarhus", "--json")
    assert {m["key"] for m in json.loads(out)["messages"]} == {"m-plan", "m-req"}
    code, out, _ = invoke("messages", "--as", "laegerne-soendergade", "--json")
    assert [m["key"] for m in json.loads(out)["messages"]] == ["m-req"]
    code, out, err = invoke("messages", "--as", "lys-montage")
    assert code == 0 and out == "" and "no messages" in err

    code, _, err = invoke("messages", "--status", "lost")
    assert code == 1 and "--status" in err


def test_deliver_once_with_nothing_due(env: Settings) -> None:
    code, out, err = invoke("deliver", "--once")
    assert code == 0, err
    assert out.strip() == "0 delivery attempts"


# --- send: what the file becomes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "event"),
    [
        (GGOP, "rehab-plan"),
        (LAE285_REQUEST, "medical-statement-request"),
        (LAE285, "medical-statement"),
        (CASE, "sickness-benefit-case"),
    ],
)
def test_the_event_of_a_legacy_document(path: Path, event: str) -> None:
    draft = cli.read_draft(path, None)
    assert draft.event == event
    [binary] = draft.content
    assert binary["resourceType"] == "Binary" and binary["contentType"] == "application/xml"


def test_a_collection_becomes_content_with_local_references(tmp_path: Path) -> None:
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:6f0c4d8e-2a51-4b7a-9a0e-2c8f1d1b0a11",
                "resource": {"resourceType": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0b5f6b0e-3c51-4b7a-9a0e-2c8f1d1b0a22",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "proposed",
                    "participant": [
                        {"actor": {"reference": "urn:uuid:6f0c4d8e-2a51-4b7a-9a0e-2c8f1d1b0a11"}}
                    ],
                },
            },
        ],
    }
    path = tmp_path / "invitation.json"
    path.write_text(json.dumps(collection))
    draft = cli.read_draft(path, None)
    assert draft.event == "sickness-benefit-case"  # the invitation's event
    assert draft.focus is not None and draft.focus[0]["resourceType"] == "Appointment"
    patient, appointment = draft.content
    assert patient["id"] == "6f0c4d8e-2a51-4b7a-9a0e-2c8f1d1b0a11"
    assert appointment["participant"][0]["actor"]["reference"] == f"Patient/{patient['id']}"

    unknown = tmp_path / "observation.json"
    unknown.write_text(json.dumps({"resourceType": "Observation", "status": "final"}))
    with pytest.raises(cli._Refused, match="--event"):
        cli.read_draft(unknown, None)
    assert cli.read_draft(unknown, "medical-statement").event == "medical-statement"


# --- send over a real socket -----------------------------------------------------------------


@pytest.fixture
def live(env: Settings) -> Iterator[LiveGateway]:
    with serve(env.model_copy(update={"delivery_in_process": False})) as gateway:
        yield gateway


def send(live: LiveGateway, *args: str) -> tuple[int, str, str]:
    return invoke(
        "send", "--gateway", live.base_url, "--keys-dir", str(live.settings.keys_dir), *args
    )


def _messages(env: Settings) -> list[dict[str, Any]]:
    code, out, err = invoke("messages", "--json")
    assert code == 0, err
    listed: list[dict[str, Any]] = json.loads(out)["messages"]
    return listed


@pytest.mark.slow
def test_send_a_rehabilitation_plan_over_a_real_socket(live: LiveGateway, env: Settings) -> None:
    code, out, err = send(
        live, "--as", "auh-ortopaedi", "--to", "aarhus-genoptraening",
        "--cc", "jobcenter-aarhus", str(GGOP),
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("ok  MessageHeader.id ")
    header_id = out.split()[2]
    [sent] = _messages(env)
    assert sent["message_id"] == header_id and sent["event"] == "rehab-plan"
    assert {d["receiver"]: d["role"] for d in sent["deliveries"]} == {
        "aarhus-genoptraening": "primary",
        "jobcenter-aarhus": "cc",
    }


@pytest.mark.slow
def test_send_prints_a_fatal_error_and_exits_1(
    live: LiveGateway, env: Settings, tmp_path: Path
) -> None:
    # A message Bundle sent as it is, without the Provenance MedCom requires.
    code, out, err = send(
        live, "--as", "auh-ortopaedi", "--to", "aarhus-genoptraening", str(GGOP), "--json"
    )
    assert code == 0, err
    good = json.loads(out)
    assert good["entry"][0]["resource"]["response"]["code"] == "ok"

    from gateway.messaging import message

    hospital, rehab = participant(env, "auh-ortopaedi"), participant(env, "aarhus-genoptraening")
    bundle = message.build_message(
        event="rehab-plan",
        sender=hospital,
        receivers=[(rehab, "primary")],
        content=[message.binary_resource(GGOP.read_bytes())],
    )
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]
    path = tmp_path / "no-provenance.json"
    path.write_text(json.dumps(bundle))
    code, out, err = send(live, "--as", "auh-ortopaedi", str(path))
    assert code == 1, err
    assert out.startswith("fatal-error")
    assert "Provenance" in out
    assert len(_messages(env)) == 1  # nothing stored for the refused one

    code, _, err = send(live, "--as", "auh-ortopaedi", "--to", "nobody", str(GGOP))
    assert code == 1 and "nobody is not a registered participant" in err


@pytest.mark.slow
def test_send_retries_connection_errors_and_gives_up_with_2(
    live: LiveGateway, env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(cli, "_sleep", delays.append)
    failures = {"left": 2}

    class Flaky(httpx.Client):
        """Drops the first POSTs to $process-message as if the gateway were restarting."""

        def post(self, url: Any, *args: Any, **kwargs: Any) -> httpx.Response:
            if str(url).endswith("$process-message") and failures["left"] > 0:
                failures["left"] -= 1
                raise httpx.ConnectError("connection refused")
            return super().post(url, *args, **kwargs)

    monkeypatch.setattr(cli, "_http_client", lambda: Flaky(timeout=30.0))
    code, out, err = send(
        live, "--as", "auh-ortopaedi", "--to", "aarhus-genoptraening", str(GGOP), "--backoff", "1"
    )
    assert code == 0, err
    assert out.startswith("ok")
    assert err.count("retrying in") == 2
    assert len(delays) == 2 and 1.0 <= delays[0] < delays[1]  # exponential back-off
    assert len(_messages(env)) == 1

    failures["left"] = 100
    delays.clear()
    code, _, err = send(
        live, "--as", "auh-ortopaedi", "--to", "aarhus-genoptraening", str(GGOP), "--retries", "2"
    )
    assert code == 2
    assert "gave up after 3 attempts" in err and len(delays) == 2


@pytest.mark.slow
def test_send_retries_a_transient_error_acknowledgement(
    live: LiveGateway, env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.messaging import acks
    from gateway.messaging.keys import gateway_encryption_keys, gateway_signing_key

    monkeypatch.setattr(cli, "_sleep", lambda _seconds: None)
    transient = {"left": 1}

    class Busy(httpx.Client):
        """Answers the first messages as a gateway whose store is down would."""

        def post(self, url: Any, *args: Any, **kwargs: Any) -> httpx.Response:
            if not str(url).endswith("$process-message") or transient["left"] <= 0:
                return super().post(url, *args, **kwargs)
            transient["left"] -= 1
            keys = gateway_encryption_keys(live.settings)
            opened = envelope.open_envelope(kwargs["content"], keys)
            header_id = json.loads(opened.payload)["entry"][0]["resource"]["id"]
            ack = acks.build_ack(acknowledged=header_id, code=acks.TRANSIENT)
            signed = envelope.sign(envelope.canonical_json(ack), gateway_signing_key(live.settings))
            return httpx.Response(
                503, content=signed.encode(), headers={"Content-Type": "application/jose"}
            )

    monkeypatch.setattr(cli, "_http_client", lambda: Busy(timeout=30.0))
    code, out, err = send(live, "--as", "auh-ortopaedi", "--to", "aarhus-genoptraening", str(GGOP))
    assert code == 0, err
    assert "transient-error" in err and out.startswith("ok")
    assert len(_messages(env)) == 1

    transient["left"] = 1
    code, out, err = send(
        live, "--as", "auh-ortopaedi", "--to", "aarhus-genoptraening", str(GGOP), "--retries", "0"
    )
    assert code == 2, err
    assert out.startswith("transient-error")
    assert len(_messages(env)) == 1
