"""``$process-message`` in process: accept, acknowledge, dedupe, refuse (both stores)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.auth.principal import Principal
from gateway.deps import get_principal
from gateway.settings import Settings
from gateway.store.schema import deliveries, messages, resources
from tests.messaging.messaging_support import (
    ack_code,
    document_message,
    principal,
    read_answer,
    sample,
    seal,
)

URL = "/fhir/$process-message"
JOSE = {"Content-Type": "application/jose"}
GGOP = "rehab-plan/ggop-shoulder-electrician.xml"


class Caller:
    """Switch the authenticated client between requests."""

    def __init__(self) -> None:
        self.current: Principal = principal("auh-ortopaedi")

    def __call__(self) -> Principal:
        return self.current


@pytest.fixture
def demo_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"demo": True, "delivery_in_process": False})


@pytest.fixture
def caller() -> Caller:
    return Caller()


@pytest.fixture
def client(demo_settings: Settings, caller: Caller) -> Iterator[TestClient]:
    app = create_app(demo_settings)
    app.dependency_overrides[get_principal] = caller
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def _counts(client: TestClient) -> tuple[int, int, int]:
    store = client.app.state.store  # type: ignore[attr-defined]

    async def count() -> tuple[int, int, int]:
        async with store.read_connection() as conn:
            n_res = (await conn.execute(select(func.count()).select_from(resources))).scalar()
            n_msg = (await conn.execute(select(func.count()).select_from(messages))).scalar()
            n_del = (await conn.execute(select(func.count()).select_from(deliveries))).scalar()
        return int(n_res or 0), int(n_msg or 0), int(n_del or 0)

    return client.portal.call(count)  # type: ignore[union-attr]


def _rehab_plan_message() -> dict:
    return document_message(
        "auh-ortopaedi",
        "aarhus-genoptraening",
        sample(GGOP),
        cc=("jobcenter-aarhus",),
        event="rehab-plan",
    )


def test_a_rehab_plan_message_is_stored_and_acknowledged_ok(
    client: TestClient, demo_settings: Settings
) -> None:
    before = _counts(client)
    response = client.post(
        URL, content=seal(demo_settings, "auh-ortopaedi", _rehab_plan_message()), headers=JOSE
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jose")
    ack = read_answer(demo_settings, response.content)
    assert ack_code(ack) == "ok"
    after = _counts(client)
    assert after[0] > before[0]  # the plan's resources
    assert after[1] == before[1] + 1
    assert after[2] == before[2] + 2  # primary + cc


def test_a_repeat_returns_the_first_acknowledgement_and_changes_nothing(
    client: TestClient, demo_settings: Settings
) -> None:
    message = _rehab_plan_message()
    first = client.post(URL, content=seal(demo_settings, "auh-ortopaedi", message), headers=JOSE)
    counts = _counts(client)
    again = client.post(URL, content=seal(demo_settings, "auh-ortopaedi", message), headers=JOSE)
    original = read_answer(demo_settings, first.content)
    repeated = read_answer(demo_settings, again.content)
    # The original acknowledgement (its MessageHeader and content) in a new Bundle (MedCom
    # reliable messaging: every Bundle has its own id).
    assert repeated["entry"] == original["entry"]
    assert repeated["id"] != original["id"]
    assert _counts(client) == counts


def test_the_same_id_with_other_content_is_a_fatal_error(
    client: TestClient, demo_settings: Settings
) -> None:
    message = _rehab_plan_message()
    client.post(URL, content=seal(demo_settings, "auh-ortopaedi", message), headers=JOSE)
    counts = _counts(client)
    changed = json.loads(json.dumps(message))
    changed["entry"][0]["resource"]["source"]["endpoint"] = "https://other.example/source"
    response = client.post(URL, content=seal(demo_settings, "auh-ortopaedi", changed), headers=JOSE)
    ack = read_answer(demo_settings, response.content)
    assert ack_code(ack) == "fatal-error"
    assert "different content" in json.dumps(ack)
    assert _counts(client) == counts


# --- refused: each with a 4xx OperationOutcome or a fatal-error, and nothing stored ----------


def _post(client: TestClient, body: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(URL, content=body, headers=headers or JOSE)


def _outcome_text(response) -> str:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_tampered_payload_is_refused(client: TestClient, demo_settings: Settings) -> None:
    from gateway.messaging import envelope
    from tests.messaging.messaging_support import gateway_public_encryption_key, signing_key

    counts = _counts(client)
    signed = envelope.sign(
        envelope.canonical_json(_rehab_plan_message()), signing_key(demo_settings, "auh-ortopaedi")
    )
    head, payload, signature = signed.split(".")
    other = json.loads(__import__("base64").urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other["timestamp"] = "2020-01-01T00:00:00+00:00"
    forged = ".".join([head, _b64(json.dumps(other).encode()), signature])
    body = envelope.encrypt(forged, gateway_public_encryption_key(demo_settings)).encode()
    response = _post(client, body)
    assert response.status_code == 401
    assert "signature does not verify" in _outcome_text(response)
    assert _counts(client) == counts


def test_a_tampered_ciphertext_is_refused(client: TestClient, demo_settings: Settings) -> None:
    counts = _counts(client)
    parts = seal(demo_settings, "auh-ortopaedi", _rehab_plan_message()).decode().split(".")
    cipher = bytearray(parts[3].encode())
    cipher[10] = ord("A") if cipher[10] != ord("A") else ord("B")
    parts[3] = cipher.decode()
    response = _post(client, ".".join(parts).encode())
    assert response.status_code == 401
    # A changed ciphertext is not "the wrong key": the gateway's key opens the content key.
    assert "tampered" in _outcome_text(response)
    assert "wrong key" not in _outcome_text(response)
    assert _counts(client) == counts


def test_an_unregistered_key_is_refused(client: TestClient, demo_settings: Settings) -> None:
    from gateway.auth.keys import generate_signing_key

    counts = _counts(client)
    body = seal(demo_settings, "auh-ortopaedi", _rehab_plan_message(), key=generate_signing_key())
    response = _post(client, body)
    assert response.status_code == 403
    assert "not a registered signing key of auh-ortopaedi" in _outcome_text(response)
    assert _counts(client) == counts


def test_a_key_of_another_participant_is_refused(
    client: TestClient, demo_settings: Settings
) -> None:
    from tests.messaging.messaging_support import signing_key

    counts = _counts(client)
    other_key = signing_key(demo_settings, "jobcenter-aarhus")
    body = seal(demo_settings, "auh-ortopaedi", _rehab_plan_message(), key=other_key)
    response = _post(client, body)
    assert response.status_code == 403
    assert "signed with a key of 'jobcenter-aarhus'" in _outcome_text(response)
    assert _counts(client) == counts


def test_a_sender_that_is_not_the_client_is_refused(
    client: TestClient, demo_settings: Settings, caller: Caller
) -> None:
    counts = _counts(client)
    # Signed by the hospital with its own key, but the token is the job centre's.
    caller.current = principal("jobcenter-aarhus")
    response = _post(client, seal(demo_settings, "auh-ortopaedi", _rehab_plan_message()))
    assert response.status_code == 403
    assert _counts(client) == counts
    # Token and signature are the job centre's, but the MessageHeader names the hospital.
    response = _post(client, seal(demo_settings, "jobcenter-aarhus", _rehab_plan_message()))
    assert response.status_code == 403
    assert "MessageHeader.sender is not the authenticated client" in _outcome_text(response)
    assert _counts(client) == counts


def test_a_message_outside_the_window_is_a_fatal_error(
    client: TestClient, demo_settings: Settings
) -> None:
    counts = _counts(client)
    message = _rehab_plan_message()
    message["timestamp"] = "2026-01-01T00:00:00+00:00"
    response = _post(client, seal(demo_settings, "auh-ortopaedi", message))
    ack = read_answer(demo_settings, response.content)
    assert ack_code(ack) == "fatal-error"
    assert "outside the accepted window" in json.dumps(ack)
    assert _counts(client) == counts


def test_an_unencrypted_message_is_refused_when_encryption_is_required(
    client: TestClient, demo_settings: Settings
) -> None:
    counts = _counts(client)
    response = _post(
        client, seal(demo_settings, "auh-ortopaedi", _rehab_plan_message(), encrypt=False)
    )
    assert response.status_code == 400
    assert "encrypted messages only" in _outcome_text(response)
    assert _counts(client) == counts


def test_an_oversized_message_is_refused(client: TestClient, demo_settings: Settings) -> None:
    counts = _counts(client)
    limit = min(demo_settings.max_message_bytes, demo_settings.max_body_bytes)
    response = _post(client, b"a" * (limit + 1))
    assert response.status_code == 413
    assert _counts(client) == counts


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not jose at all", "application/jose", 400),
        (b"a.b", "application/jose", 400),
        (b"{}", "application/fhir+json", 415),
        (b"\xff\xfe", "application/jose", 400),
    ],
)
def test_what_is_not_jose_is_refused(
    client: TestClient, body: bytes, content_type: str, status: int
) -> None:
    counts = _counts(client)
    response = _post(client, body, {"Content-Type": content_type})
    assert response.status_code == status
    assert _outcome_text(response)
    assert _counts(client) == counts


def test_a_message_breaking_medcom_rules_is_a_fatal_error_naming_the_element(
    client: TestClient, demo_settings: Settings
) -> None:
    counts = _counts(client)
    message = _rehab_plan_message()
    message["entry"] = [
        e for e in message["entry"] if e["resource"]["resourceType"] != "Provenance"
    ]
    response = _post(client, seal(demo_settings, "auh-ortopaedi", message))
    ack = read_answer(demo_settings, response.content)
    assert ack_code(ack) == "fatal-error"
    outcome = next(
        e["resource"] for e in ack["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
    )
    assert any("Provenance" in i["diagnostics"] for i in outcome["issue"])
    assert _counts(client) == counts


def test_a_receiver_that_is_not_registered_is_a_fatal_error(
    client: TestClient, demo_settings: Settings
) -> None:
    counts = _counts(client)
    message = _rehab_plan_message()
    receiver_ref = message["entry"][0]["resource"]["destination"][0]["receiver"]["reference"]
    for entry in message["entry"]:
        if entry.get("fullUrl") == receiver_ref:
            entry["resource"]["identifier"] = [
                {"system": "urn:oid:1.2.208.176.1.1", "value": "999999999999"}
            ]
    response = _post(client, seal(demo_settings, "auh-ortopaedi", message))
    ack = read_answer(demo_settings, response.content)
    assert ack_code(ack) == "fatal-error"
    assert "not a registered participant" in json.dumps(ack)
    assert _counts(client) == counts


def test_the_gateway_publishes_its_signing_and_encryption_keys(client: TestClient) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert {k["use"] for k in keys} == {"sig", "enc"}
    assert all("d" not in k for k in keys)


def test_store_trouble_is_a_transient_error_and_stores_nothing(
    client: TestClient, demo_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import asynccontextmanager

    from gateway.errors import StoreUnavailable

    store = client.app.state.store  # type: ignore[attr-defined]
    counts = _counts(client)

    @asynccontextmanager
    async def broken(operation: str = "write"):  # type: ignore[no-untyped-def]
        raise StoreUnavailable(f"the store is unavailable for {operation}; retry later")
        yield

    monkeypatch.setattr(store, "write", broken)
    message = _rehab_plan_message()
    response = _post(client, seal(demo_settings, "auh-ortopaedi", message))
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert ack_code(read_answer(demo_settings, response.content)) == "transient-error"
    monkeypatch.undo()
    assert _counts(client) == counts
    # The retry, once the store is back, is accepted.
    response = _post(client, seal(demo_settings, "auh-ortopaedi", message))
    assert ack_code(read_answer(demo_settings, response.content)) == "ok"


async def test_concurrent_copies_of_one_message_are_stored_once(
    settings: Settings,
) -> None:
    import asyncio

    from gateway.messaging.inbound import process_message
    from gateway.participants.demo import ensure_demo_participants
    from gateway.store.database import Database
    from gateway.store.repository import Store

    database = Database(settings.database_url)
    await database.migrate()
    store = Store(database, fhir_base=settings.fhir_base)
    try:
        await ensure_demo_participants(settings, database, store)
        body = seal(settings, "auh-ortopaedi", _rehab_plan_message())
        answers = await asyncio.gather(
            *[
                process_message(
                    store, settings, principal("auh-ortopaedi"), body, "application/jose"
                )
                for _ in range(4)
            ]
        )
        assert {a.code for a in answers} == {"ok"}
        assert sum(1 for a in answers if not a.repeated) == 1
        # One acknowledgement (its MessageHeader and content), each in a Bundle of its own.
        assert len({json.dumps(a.ack["entry"], sort_keys=True) for a in answers}) == 1
        async with store.read_connection() as conn:
            n = (await conn.execute(select(func.count()).select_from(messages))).scalar()
            plans = (
                await conn.execute(
                    select(func.count())
                    .select_from(resources)
                    .where(resources.c.type == "ServiceRequest")
                )
            ).scalar()
        assert n == 1
        assert plans == 1
    finally:
        await database.dispose()
