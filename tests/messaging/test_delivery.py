"""The store-and-forward worker against a respx-mocked receiver endpoint (both stores).

Faults (timeout, 500, connection refused, 400, …) are retried or failed as the rules say and
never dropped; an ``ok`` acknowledgement is routed back to the sender; a copy consent
withholds fails with "withheld"; two workers on one database never deliver a row at the same
time. Back-off is set to zero where a test needs the next attempt at once; no test reads the
clock.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from joserfc import jws
from sqlalchemy import select, update
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.messaging import envelope, records
from gateway.messaging.delivery import (
    DeliveryWorker,
    backoff_seconds,
    run_deliveries,
)
from gateway.messaging.keys import gateway_encryption_keys, gateway_signing_key
from gateway.messaging.records import Delivery, MessageRecord
from gateway.participants.directory import ParticipantDirectory
from gateway.search.dates import utc_now
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import deliveries, messages
from tests.messaging.test_outbound import (
    EMPLOYER,
    HOSPITAL,
    JOBCENTRE,
    REHAB,
    Env,
    ack_for,
    care_plan,
    make_env,
    open_sealed,
    patient,
    private_key,
    set_endpoint,
    store_message,
)

REHAB_URL = "https://rehab.example/fhir/messages"
JOBCENTRE_URL = "https://jobcentre.example/fhir/messages"
HOSPITAL_URL = "https://hospital.example/fhir/messages"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    fast = settings.model_copy(
        update={
            "delivery_in_process": False,
            "delivery_backoff_base_seconds": 0.0,
            "delivery_max_attempts": 3,
        }
    )
    made = await make_env(fast)
    await set_endpoint(made, REHAB, REHAB_URL)
    yield made
    await made.database.dispose()


@pytest.fixture
def mock() -> Any:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def rehab_message(env: Env, *, cc: tuple[str, ...] = ()) -> MessageRecord:
    return await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(REHAB, "primary"), *[(c, "cc") for c in cc]],
        stored=[patient(), care_plan()],
    )


async def delivery(env: Env, key: str, receiver: str = REHAB) -> Delivery:
    async with env.store.read_connection() as conn:
        found = await records.get_delivery(conn, key, receiver)
    assert found is not None, "a delivery row is never dropped"
    return found


def worker(env: Env, owner: str = "w1", **overrides: Any) -> DeliveryWorker:
    settings = env.settings.model_copy(update=overrides) if overrides else env.settings
    return DeliveryWorker(env.store, settings, owner=owner)


async def run(env: Env, rounds: int = 1, **overrides: Any) -> int:
    total = 0
    async with worker(env, **overrides) as w:
        for _ in range(rounds):
            total += await w.run_once()
    return total


def signed_ack(env: Env, request: httpx.Request, code: str = "ok", signer: str = REHAB) -> str:
    """What the receiver answers: its Acknowledgement, signed with ``signer``'s key."""
    bundle = open_sealed(env.settings, request.content.decode("ascii"), REHAB)
    ack = ack_for(bundle, code)
    return envelope.sign(envelope.canonical_json(ack), private_key(env.settings, signer))


def acking(env: Env, code: str = "ok", signer: str = REHAB) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Content-Type"] == "application/jose"
        body = signed_ack(env, request, code, signer)
        return httpx.Response(200, content=body, headers={"Content-Type": "application/jose"})

    return handler


# --- the happy paths --------------------------------------------------------------------------


async def test_ok_ack_acknowledges_and_routes_a_reply_to_the_sender(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(side_effect=acking(env))
    record = await rehab_message(env)
    assert await run(env) == 1
    assert route.call_count == 1
    # What the receiver got: its own copy, encrypted to it and signed by the gateway.
    received = open_sealed(env.settings, route.calls[0].request.content.decode(), REHAB)
    assert received["entry"][0]["resource"]["id"] == record.message_id
    done = await delivery(env, record.key)
    assert (done.status, done.ack_code, done.attempts) == ("acknowledged", "ok", 1)
    assert done.lease_owner is None and done.lease_until is None
    assert done.ack is not None
    ack_id = done.ack["entry"][0]["resource"]["id"]
    async with env.store.read_connection() as conn:
        reply = await records.find_message(conn, REHAB, ack_id)
        assert reply is not None
        routed = await records.deliveries_of(conn, reply.key)
    assert reply.reply_to == record.key
    assert [(d.receiver, d.role, d.mode, d.status) for d in routed] == [
        (HOSPITAL, "reply", "mailbox", "pending")
    ]
    assert await run(env) == 0  # nothing left to do


async def test_ok_ack_inside_a_jwe_to_the_gateway_is_read_too(env: Env, mock: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        gateway_enc = gateway_encryption_keys(env.settings)[0]
        return httpx.Response(200, content=envelope.encrypt(signed_ack(env, request), gateway_enc))

    mock.post(REHAB_URL).mock(side_effect=handler)
    record = await rehab_message(env)
    await run(env)
    assert (await delivery(env, record.key)).status == "acknowledged"


async def test_2xx_without_an_ack_is_delivered(env: Env, mock: Any) -> None:
    mock.post(REHAB_URL).mock(return_value=httpx.Response(202))
    record = await rehab_message(env)
    await run(env)
    done = await delivery(env, record.key)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 1, None)


async def test_an_ack_the_receiver_did_not_sign_only_counts_as_delivered(
    env: Env, mock: Any
) -> None:
    mock.post(REHAB_URL).mock(side_effect=acking(env, signer=JOBCENTRE))
    record = await rehab_message(env)
    await run(env)
    done = await delivery(env, record.key)
    assert done.status == "delivered" and done.ack is None
    assert done.last_error is not None and "acknowledgement refused" in done.last_error


async def test_a_reply_is_delivered_to_the_senders_endpoint(env: Env, mock: Any) -> None:
    await set_endpoint(env, HOSPITAL, HOSPITAL_URL)
    mock.post(REHAB_URL).mock(side_effect=acking(env))
    to_sender = mock.post(HOSPITAL_URL).mock(return_value=httpx.Response(200))
    record = await rehab_message(env)
    await run(env)  # the message to the receiver, whose ack creates the reply row
    await run(env)  # the reply to the sender
    assert to_sender.call_count == 1
    routed = open_sealed(env.settings, to_sender.calls[0].request.content.decode(), HOSPITAL)
    response = routed["entry"][0]["resource"]["response"]
    assert (response["identifier"], response["code"]) == (record.message_id, "ok")
    done = await delivery(env, record.key)
    assert done.ack is not None
    async with env.store.read_connection() as conn:
        reply = await records.find_message(conn, REHAB, done.ack["entry"][0]["resource"]["id"])
        assert reply is not None
        routed_rows = await records.deliveries_of(conn, reply.key)
    assert [(d.status, d.mode) for d in routed_rows] == [("delivered", "endpoint")]


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectTimeout("connect timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "connection error"),
        (httpx.Response(500), "HTTP 500"),
        (httpx.Response(503), "HTTP 503"),
        (httpx.Response(408), "HTTP 408"),
        (httpx.Response(429), "HTTP 429"),
    ],
    ids=["read-timeout", "connect-timeout", "refused", "500", "503", "408", "429"],
)
async def test_transient_faults_are_retried_then_failed_never_dropped(
    env: Env, mock: Any, fault: Any, problem: str
) -> None:
    if isinstance(fault, Exception):
        route = mock.post(REHAB_URL).mock(side_effect=fault)
    else:
        route = mock.post(REHAB_URL).mock(return_value=fault)
    record = await rehab_message(env)
    await run(env)
    first = await delivery(env, record.key)
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error is not None and problem in first.last_error
    assert first.lease_owner is None
    await run(env, rounds=5)  # max 3 attempts
    assert route.call_count == 3
    last = await delivery(env, record.key)
    assert (last.status, last.attempts) == ("failed", 3)
    assert last.last_error is not None
    assert last.last_error.startswith("gave up after 3 attempts; last: ")
    assert problem in last.last_error


async def test_a_fault_then_success_is_delivered(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(500), httpx.Response(200)]
    )
    record = await rehab_message(env)
    await run(env, rounds=3)
    assert route.call_count == 3
    done = await delivery(env, record.key)
    assert (done.status, done.attempts) == ("delivered", 3)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422])
async def test_other_4xx_fail_at_once(env: Env, mock: Any, status: int) -> None:
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [{"diagnostics": "no"}]})
    route = mock.post(REHAB_URL).mock(return_value=httpx.Response(status, text=body))
    record = await rehab_message(env)
    await run(env, rounds=3)
    assert route.call_count == 1
    done = await delivery(env, record.key)
    assert (done.status, done.attempts) == ("failed", 1)
    assert done.last_error is not None and f"HTTP {status} from {REHAB_URL}" in done.last_error


async def test_back_off_makes_a_retry_wait(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(return_value=httpx.Response(500))
    record = await rehab_message(env)
    queued = (await delivery(env, record.key)).next_attempt_at
    async with worker(env, delivery_backoff_base_seconds=600.0) as w:
        assert await w.run_once() == 1
        assert await w.run_once() == 0  # not due yet
    retry = await delivery(env, record.key)
    assert retry.next_attempt_at >= queued + timedelta(seconds=300)
    assert route.call_count == 1


async def test_retry_after_is_honoured(env: Env, mock: Any) -> None:
    mock.post(REHAB_URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))
    record = await rehab_message(env)
    queued = (await delivery(env, record.key)).next_attempt_at
    await run(env)
    assert (await delivery(env, record.key)).next_attempt_at >= queued + timedelta(seconds=120)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    settings = Settings(
        environment="test", delivery_backoff_base_seconds=2.0, delivery_backoff_max_seconds=60.0
    )
    assert backoff_seconds(1, settings, rand=lambda: 0.0) == 1.0
    assert backoff_seconds(1, settings, rand=lambda: 1.0) == 2.0
    assert backoff_seconds(4, settings, rand=lambda: 0.0) == 8.0
    assert backoff_seconds(4, settings, rand=lambda: 1.0) == 16.0
    assert backoff_seconds(50, settings, rand=lambda: 1.0) == 60.0
    assert 30.0 <= backoff_seconds(10_000, settings) <= 60.0


async def test_a_receiver_that_never_finishes_answering_is_a_timeout(env: Env, mock: Any) -> None:
    async def trickle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    mock.post(REHAB_URL).mock(side_effect=trickle)
    record = await rehab_message(env)
    await run(env, delivery_timeout_seconds=0.05, delivery_connect_timeout_seconds=0.05)
    row = await delivery(env, record.key)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "timeout" in row.last_error


async def test_an_unexpected_error_is_retried_and_counted_until_failed(
    env: Env, mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr("gateway.messaging.delivery.copy_for", broken)
    record = await rehab_message(env)
    await run(env, rounds=5)
    row = await delivery(env, record.key)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error == "gave up after 3 attempts; last: internal error: RuntimeError"


async def test_a_message_that_cannot_be_rendered_fails_at_once(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    record = await rehab_message(env)
    async with env.store.write("break it") as writer:
        await writer.conn.execute(
            update(messages)
            .where(messages.c.key == record.key)
            .values(bundle=json.dumps({"resourceType": "Bundle", "entry": []}))
        )
    await run(env)
    row = await delivery(env, record.key)
    assert route.call_count == 0
    assert row.status == "failed"
    assert row.last_error is not None and row.last_error.startswith("cannot render")


# --- acknowledgement codes --------------------------------------------------------------------


async def test_transient_error_ack_is_retried_then_ok(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(
        side_effect=[
            lambda request: httpx.Response(
                200, content=signed_ack(env, request, "transient-error")
            ),
            acking(env),
        ]
    )
    record = await rehab_message(env)
    await run(env)
    waiting = await delivery(env, record.key)
    assert (waiting.status, waiting.ack_code, waiting.attempts) == ("pending", "transient-error", 1)
    assert waiting.last_error is not None and "transient-error" in waiting.last_error
    await run(env)
    assert route.call_count == 2
    done = await delivery(env, record.key)
    assert (done.status, done.ack_code, done.attempts) == ("acknowledged", "ok", 2)


async def test_fatal_error_ack_fails_and_tells_the_sender(env: Env, mock: Any) -> None:
    mock.post(REHAB_URL).mock(side_effect=acking(env, "fatal-error"))
    record = await rehab_message(env)
    await run(env, rounds=2)
    done = await delivery(env, record.key)
    assert (done.status, done.ack_code, done.attempts) == ("failed", "fatal-error", 1)
    assert done.ack is not None
    async with env.store.read_connection() as conn:
        reply = await records.find_message(conn, REHAB, done.ack["entry"][0]["resource"]["id"])
    assert reply is not None and reply.reply_to == record.key


# --- refusals before any request ------------------------------------------------------------


async def test_withheld_by_consent_fails_with_the_reason_and_sends_nothing(
    env: Env, mock: Any
) -> None:
    await set_endpoint(env, JOBCENTRE, JOBCENTRE_URL)
    to_jobcentre = mock.post(JOBCENTRE_URL).mock(return_value=httpx.Response(200))
    mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    record = await rehab_message(env, cc=(JOBCENTRE,))
    await run(env)
    assert to_jobcentre.call_count == 0
    withheld = await delivery(env, record.key, JOBCENTRE)
    assert withheld.status == "failed" and withheld.attempts == 0
    assert withheld.last_error is not None and withheld.last_error.startswith("withheld:")
    assert (await delivery(env, record.key)).status == "delivered"
    # The sender sees why (its view of the deliveries).
    async with env.store.read_connection() as conn:
        views = {d.receiver: d.to_json() for d in await records.deliveries_of(conn, record.key)}
    assert views[JOBCENTRE]["last_error"].startswith("withheld:")


async def test_no_encryption_key_fails_with_a_clear_error(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    rehab = await env.participant(REHAB)
    await env.directory.set_jwks(
        REHAB, {"keys": [k for k in rehab.jwks["keys"] if k.get("use", "sig") == "sig"]}
    )
    record = await rehab_message(env)
    await run(env)
    assert route.call_count == 0
    done = await delivery(env, record.key)
    assert done.status == "failed"
    assert done.last_error is not None and "no registered encryption key" in done.last_error
    # With plain JWS allowed, the next message goes out signed but unencrypted.
    second = await rehab_message(env)
    await run(env, delivery_allow_plain_jws=True)
    assert (await delivery(env, second.key)).status == "delivered"
    token = route.calls[0].request.content
    assert token.count(b".") == 2
    jws.deserialize_compact(token, gateway_signing_key(env.settings))


async def test_receiver_without_an_endpoint_any_more_goes_to_its_mailbox(
    env: Env, mock: Any
) -> None:
    record = await rehab_message(env)
    await set_endpoint(env, REHAB, None)
    await run(env)
    moved = await delivery(env, record.key)
    assert (moved.mode, moved.status, moved.attempts) == ("mailbox", "pending", 0)


async def test_mailbox_rows_are_left_to_the_mailbox(env: Env, mock: Any) -> None:
    record = await store_message(
        env,
        sender=HOSPITAL,
        receivers=[(EMPLOYER, "primary")],
        stored=[patient(), care_plan(addressees=(EMPLOYER,))],
    )
    assert await run(env) == 0
    assert (await delivery(env, record.key, EMPLOYER)).status == "pending"


# --- leases -----------------------------------------------------------------------------------


async def _lease(env: Env, key: str, owner: str, until_delta: timedelta) -> None:
    async with env.store.write("test lease") as writer:
        await writer.conn.execute(
            update(deliveries)
            .where(deliveries.c.message_key == key)
            .values(lease_owner=owner, lease_until=utc_now() + until_delta)
        )


async def test_a_live_lease_is_respected_and_an_expired_one_reclaimed(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    held = await rehab_message(env)
    crashed = await rehab_message(env)
    await _lease(env, held.key, "other-worker", timedelta(minutes=10))
    await _lease(env, crashed.key, "crashed-worker", -timedelta(seconds=1))
    assert await run(env) == 1
    assert route.call_count == 1
    assert (await delivery(env, held.key)).status == "pending"
    assert (await delivery(env, held.key)).lease_owner == "other-worker"
    assert (await delivery(env, crashed.key)).status == "delivered"


async def test_an_outcome_is_not_recorded_by_a_worker_that_lost_its_lease(
    env: Env, mock: Any
) -> None:
    record = await rehab_message(env)

    async def slow(request: httpx.Request) -> httpx.Response:
        # Meanwhile the lease ran out and another worker took the row.
        await _lease(env, record.key, "w2", timedelta(minutes=10))
        return httpx.Response(500)

    mock.post(REHAB_URL).mock(side_effect=slow)
    await run(env)
    row = await delivery(env, record.key)
    assert (row.status, row.lease_owner, row.attempts) == ("pending", "w2", 0)


async def test_two_workers_on_one_database_never_deliver_a_row_twice(env: Env, mock: Any) -> None:
    count = 24
    keys = [(await rehab_message(env)).key for _ in range(count)]
    in_flight: Counter[str] = Counter()
    posted: Counter[str] = Counter()
    overlap: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        message_id = open_sealed(env.settings, request.content.decode(), REHAB)["entry"][0][
            "resource"
        ]["id"]
        in_flight[message_id] += 1
        posted[message_id] += 1
        if in_flight[message_id] > 1:
            overlap.append(message_id)
        await asyncio.sleep(0.01)
        in_flight[message_id] -= 1
        return httpx.Response(200)

    mock.post(REHAB_URL).mock(side_effect=handler)
    # A second "process": its own engine and store on the same database.
    other_db = Database(env.settings.database_url)
    other = Env(
        env.settings, other_db, Store(other_db, fhir_base=env.settings.fhir_base), env.directory
    )
    try:
        first = worker(env, "w1", delivery_batch_size=5)
        second = DeliveryWorker(
            other.store, env.settings.model_copy(update={"delivery_batch_size": 5}), owner="w2"
        )
        claims: dict[str, list[tuple[str, str]]] = {"w1": [], "w2": []}

        async def drain(w: DeliveryWorker) -> None:
            original = w.claim

            async def recording() -> list[tuple[str, str]]:
                got = await original()
                claims[w.owner] += got
                return got

            w.claim = recording  # type: ignore[method-assign]
            for _ in range(20):
                await w.run_once()

        async with first, second:
            await asyncio.gather(drain(first), drain(second))
    finally:
        await other_db.dispose()
    assert not overlap
    assert all(n == 1 for n in posted.values()) and len(posted) == count
    assert not set(claims["w1"]) & set(claims["w2"])
    assert len(claims["w1"]) + len(claims["w2"]) == count
    for key in keys:
        assert (await delivery(env, key)).status == "delivered"


async def test_concurrent_claims_are_disjoint(env: Env) -> None:
    for _ in range(10):
        await rehab_message(env)
    workers = [worker(env, f"w{i}", delivery_batch_size=4) for i in range(4)]
    claimed = await asyncio.gather(*(w.claim() for w in workers))
    flat = [row for rows in claimed for row in rows]
    assert len(flat) == len(set(flat)) == 10
    async with env.store.read_connection() as conn:
        owners = Counter(
            row.lease_owner for row in await conn.execute(select(deliveries.c.lease_owner))
        )
    assert owners == Counter({f"w{i}": len(rows) for i, rows in enumerate(claimed) if rows})


# --- running --------------------------------------------------------------------------------


async def _wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_run_delivers_until_stopped_and_tolerates_an_empty_table(env: Env, mock: Any) -> None:
    mock.post(REHAB_URL).mock(side_effect=acking(env))
    stop = asyncio.Event()
    w = worker(env, delivery_poll_seconds=0.05)
    task = asyncio.create_task(w.run(stop))
    await asyncio.sleep(0.2)  # a few idle rounds over an empty table
    assert not task.done()
    record = await rehab_message(env)

    async def acknowledged() -> bool:
        return (await delivery(env, record.key)).status == "acknowledged"

    await _wait_for(acknowledged)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 1


async def test_run_deliveries_once_for_the_cli(env: Env, mock: Any) -> None:
    route = mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    first, second = await rehab_message(env), await rehab_message(env)
    assert await run_deliveries(env.settings, once=True) == 2
    assert route.call_count == 2
    for key in (first.key, second.key):
        assert (await delivery(env, key)).status == "delivered"
    assert await run_deliveries(env.settings, once=True) == 0


async def test_run_deliveries_until_stopped(env: Env, mock: Any) -> None:
    mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    record = await rehab_message(env)
    stop = asyncio.Event()
    settings = env.settings.model_copy(update={"delivery_poll_seconds": 0.05})
    task = asyncio.create_task(run_deliveries(settings, once=False, stop=stop))

    async def delivered() -> bool:
        return (await delivery(env, record.key)).status == "delivered"

    await _wait_for(delivered)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 1


def test_the_app_runs_the_worker_in_process_and_stops_it(settings: Settings) -> None:
    app_settings = settings.model_copy(
        update={"demo": True, "delivery_poll_seconds": 0.05, "delivery_in_process": True}
    )
    with respx.mock(assert_all_called=False) as router:
        route = router.post(REHAB_URL).mock(return_value=httpx.Response(200))
        with TestClient(create_app(app_settings)) as client:
            store: Store = client.app.state.store  # type: ignore[attr-defined]
            env = Env(app_settings, store.database, store, ParticipantDirectory(store.database))
            assert client.portal is not None

            async def setup() -> MessageRecord:
                await set_endpoint(env, REHAB, REHAB_URL)
                return await rehab_message(env)

            record = client.portal.call(setup)

            async def delivered() -> bool:
                return (await delivery(env, record.key)).status == "delivered"

            client.portal.call(_wait_for, delivered)
        assert route.call_count == 1


def test_the_app_can_leave_delivery_to_brobygger_deliver(settings: Settings) -> None:
    app_settings = settings.model_copy(update={"demo": True, "delivery_in_process": False})
    with respx.mock(assert_all_called=False) as router:
        route = router.post(REHAB_URL).mock(return_value=httpx.Response(200))
        with TestClient(create_app(app_settings)) as client:
            store: Store = client.app.state.store  # type: ignore[attr-defined]
            env = Env(app_settings, store.database, store, ParticipantDirectory(store.database))

            async def setup_and_wait() -> None:
                await set_endpoint(env, REHAB, REHAB_URL)
                await rehab_message(env)
                await asyncio.sleep(0.3)

            assert client.portal is not None
            client.portal.call(setup_and_wait)
        assert route.call_count == 0


async def test_worker_tolerates_a_broken_round(env: Env, mock: Any) -> None:
    mock.post(REHAB_URL).mock(return_value=httpx.Response(200))
    w = worker(env, delivery_poll_seconds=0.01)
    calls = 0
    original = w.run_once

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the store is down")
        return await original()

    w.run_once = flaky  # type: ignore[method-assign]
    record = await rehab_message(env)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))

    async def delivered() -> bool:
        return (await delivery(env, record.key)).status == "delivered"

    await _wait_for(delivered)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert calls >= 2


# --- plain transport (a MedCom system) --------------------------------------------------------


async def test_a_plain_receiver_gets_the_bundle_itself_and_answers_with_json(
    env: Env, mock: Any
) -> None:
    await ParticipantDirectory(env.database).set_transport(REHAB, "plain")
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Content-Type"] == "application/fhir+json"
        bundle = json.loads(request.content)
        seen.append(bundle)
        return httpx.Response(200, json=ack_for(bundle, "ok"))

    mock.post(REHAB_URL).mock(side_effect=handler)
    record = await rehab_message(env)
    await run(env)
    row = await delivery(env, record.key)
    assert (row.status, row.ack_code) == ("acknowledged", "ok")
    assert [b["entry"][0]["resource"]["id"] for b in seen] == [record.message_id]
    # The acknowledgement is routed back to the sender as before.
    async with env.store.read_connection() as conn:
        replies = await records.find_by_message_id(conn, row.ack["entry"][0]["resource"]["id"])
    assert [r.reply_to for r in replies] == [record.key]
