"""Store-and-forward: POST each pending delivery to its receiver's endpoint, at least once.

A worker claims due rows (``status = pending``, ``mode = endpoint``, ``next_attempt_at`` passed,
no live lease) with a lease: on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` and an update of
``lease_owner``/``lease_until`` in one short transaction, on SQLite the same inside the store's
single writer. Several gateway processes (and ``brobygger deliver``) can therefore run against
one database without delivering a row twice at the same time; a crashed worker's rows come back
when its lease runs out (at least once: receivers dedupe by MessageHeader.id).

One attempt, by what comes back:

    2xx + the receiver's signed Acknowledgement  → ``route_ack``: ok → acknowledged,
                                                   fatal-error → failed, transient-error → retry
    2xx without one                              → delivered
    timeout, connection error, 408, 429, 5xx     → retry with exponential back-off and jitter
    any other status                             → failed at once
    consent withholds the message's focus        → failed, ``last_error`` "withheld: …"

After ``delivery_max_attempts`` a retried row is ``failed`` with the last problem in
``last_error``. No row is ever deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import GatewayError, StoreUnavailable
from gateway.messaging import envelope, records
from gateway.messaging.keys import gateway_encryption_keys, signing_keys
from gateway.messaging.outbound import (
    ACK_TRANSIENT,
    NoEncryptionKey,
    copy_for,
    read_ack_header,
    route_ack,
)
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.search.dates import utc_now
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import deliveries
from profiles import fhir_json

log = logging.getLogger(__name__)

ENDPOINT = "endpoint"
MAILBOX = "mailbox"
_RETRY_STATUSES = frozenset({408, 429})
_COMPACT_JOSE = re.compile(r"^[A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]*){2}((\.[A-Za-z0-9_\-]*){2})?$")


def backoff_seconds(
    attempts: int, settings: Settings, rand: Callable[[], float] = random.random
) -> float:
    """Delay before the next try after ``attempts`` tries: exponential, capped, jittered.

    The ceiling is ``base * 2**(attempts-1)`` (at most ``delivery_backoff_max_seconds``); the
    delay is drawn from [ceiling/2, ceiling] so that receivers coming back are not hit by every
    sender at the same moment.
    """
    exponent = min(max(attempts - 1, 0), 40)
    ceiling = min(
        settings.delivery_backoff_max_seconds, settings.delivery_backoff_base_seconds * 2**exponent
    )
    return float(ceiling / 2 + rand() * ceiling / 2)


def default_owner() -> str:
    """A lease owner id unique to this worker: host, process, random suffix."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to (applied to the row by ``DeliveryWorker._record``)."""

    kind: str  # delivered | acknowledged | retry | failed | to-mailbox | skipped
    error: str | None = None
    posted: bool = True
    retry_after: float | None = None
    ack: dict[str, Any] | None = None
    ack_signed: str | None = None
    ack_code: str | None = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


_JOSE_HEADERS = {"Content-Type": envelope.MEDIA_TYPE, "Accept": envelope.MEDIA_TYPE}
# A receiver registered for plain transport (a MedCom system) gets the message Bundle itself,
# over the TLS connection to its registered endpoint, and answers with its Acknowledgement.
_PLAIN_HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _looks_like_fhir_json(response: httpx.Response) -> bool:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media in ("application/fhir+json", "application/json") and bool(response.content)


def _read_plain_ack(message_id: str, response: httpx.Response) -> Outcome:
    """A plain receiver's Acknowledgement (JSON) in a 2xx answer."""
    try:
        ack = fhir_json.loads(response.content)
        if not isinstance(ack, dict):
            raise ValueError("the acknowledgement is not a JSON object")
        info = read_ack_header(ack)
        if info.acknowledged != message_id:
            raise ValueError(f"it answers {info.acknowledged}, not {message_id}")
    except (GatewayError, ValueError, RecursionError) as exc:
        return Outcome("delivered", f"HTTP {response.status_code}, acknowledgement refused: {exc}")
    return Outcome("acknowledged", ack=ack, ack_signed=response.text, ack_code=info.code)


def _looks_like_jose(response: httpx.Response) -> bool:
    body = response.content.strip()
    if not body or len(body) > 10 * 1024 * 1024:
        return False
    if response.headers.get("Content-Type", "").startswith(envelope.MEDIA_TYPE):
        return True
    try:
        return bool(_COMPACT_JOSE.match(body.decode("ascii")))
    except UnicodeDecodeError:
        return False


def _due(now: Any) -> Any:
    return and_(
        deliveries.c.status == records.PENDING,
        deliveries.c.mode == ENDPOINT,
        deliveries.c.next_attempt_at <= now,
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
    )


class DeliveryWorker:
    """Delivers due endpoint-mode rows; ``run_once`` for one batch, ``run`` until stopped."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        owner: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if settings.delivery_lease_seconds <= (
            settings.delivery_timeout_seconds + settings.delivery_connect_timeout_seconds
        ):
            raise ValueError("delivery_lease_seconds must outlast one delivery attempt")
        self.store = store
        self.settings = settings
        self.owner = (owner or default_owner())[:64]
        self.directory = ParticipantDirectory(store.database)
        self._client = client
        self._own_client = client is None
        self._semaphore = asyncio.Semaphore(max(1, settings.delivery_concurrency))

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(
                self.settings.delivery_timeout_seconds,
                connect=self.settings.delivery_connect_timeout_seconds,
            )
            self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> DeliveryWorker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def run(self, stop: asyncio.Event) -> int:
        """Deliver until ``stop`` is set; returns how many attempts were made."""
        total = 0
        try:
            while not stop.is_set():
                try:
                    claimed = await self.run_once()
                except Exception:  # the store is down, …: try again after a pause
                    log.exception("delivery worker %s: a round failed", self.owner)
                    claimed = 0
                total += claimed
                if claimed < self.settings.delivery_batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.delivery_poll_seconds)
        finally:
            await self.aclose()
        return total

    async def run_once(self) -> int:
        """Claim one batch of due rows and attempt each; returns how many were claimed."""
        claimed = await self.claim()
        if claimed:
            await asyncio.gather(*(self._deliver(key, receiver) for key, receiver in claimed))
        return len(claimed)

    # --- claiming --------------------------------------------------------------------------

    async def claim(self) -> list[tuple[str, str]]:
        """Lease up to ``delivery_batch_size`` due rows to this worker: (message key, receiver)."""
        now = utc_now()
        # Idle gateways only read: no write transaction unless something is due.
        async with self.store.read_connection() as conn:
            due = (
                await conn.execute(select(deliveries.c.message_key).where(_due(now)).limit(1))
            ).first()
        if due is None:
            return []
        until = now + timedelta(seconds=self.settings.delivery_lease_seconds)
        query = (
            select(deliveries.c.message_key, deliveries.c.receiver)
            .where(_due(now))
            .order_by(deliveries.c.next_attempt_at)
            .limit(self.settings.delivery_batch_size)
        )
        if not self.store.database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        claimed: list[tuple[str, str]] = []
        async with self.store.write("delivery claim") as writer:
            rows = (await writer.conn.execute(query)).all()
            for row in rows:
                result = await writer.conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.message_key == row.message_key,
                        deliveries.c.receiver == row.receiver,
                        _due(now),
                    )
                    .values(lease_owner=self.owner, lease_until=until)
                )
                if result.rowcount:
                    claimed.append((row.message_key, row.receiver))
        return claimed

    # --- one delivery ----------------------------------------------------------------------

    async def _deliver(self, key: str, receiver: str) -> None:
        async with self._semaphore:
            try:
                outcome = await self._attempt(key, receiver)
            except Exception as exc:  # never lose the row, never stop the worker
                log.exception("delivery of %s to %s: unexpected error", key, receiver)
                # Counted as an attempt, so a row that always breaks ends up failed, visibly.
                outcome = Outcome("retry", f"internal error: {type(exc).__name__}")
            try:
                await self._record(key, receiver, outcome)
            except Exception:
                # The lease runs out and the row is tried again: at least once.
                log.exception("delivery of %s to %s: recording the outcome failed", key, receiver)

    async def _attempt(self, key: str, receiver_name: str) -> Outcome:
        async with self.store.read_connection() as conn:
            record = await records.get_message(conn, key)
            delivery = await records.get_delivery(conn, key, receiver_name)
        if delivery is None or delivery.lease_owner != self.owner:
            return Outcome("skipped", posted=False)
        if record is None:
            return Outcome("failed", f"the message record {key} is missing", posted=False)
        receiver = await self.directory.find(receiver_name)
        if receiver is None:
            return Outcome("failed", f"{receiver_name} is not a registered participant", False)
        if not receiver.endpoint:
            return Outcome("to-mailbox", posted=False)
        try:
            body = await copy_for(self.store, self.settings, record, receiver)
        except NoEncryptionKey as exc:
            return Outcome("failed", str(exc), posted=False)
        except StoreUnavailable:
            raise  # transient: retried
        except GatewayError as exc:  # a stored message that cannot be rendered never will be
            return Outcome("failed", f"cannot render the message for {receiver_name}: {exc}", False)
        if body is None:
            return Outcome(
                "failed",
                f"withheld: the consent module lets {receiver_name} see none of this "
                "message's content",
                posted=False,
            )
        return await self._post(receiver, record.message_id, delivery.role, body)

    async def _post(
        self, receiver: Participant, message_id: str, role: str, body: str | dict[str, Any]
    ) -> Outcome:
        endpoint = str(receiver.endpoint)
        # httpx times each read and write; the whole exchange must also end well within the
        # lease (a receiver trickling its answer byte by byte).
        deadline = (
            self.settings.delivery_timeout_seconds + self.settings.delivery_connect_timeout_seconds
        )
        try:
            response = await asyncio.wait_for(
                self.client.post(
                    endpoint,
                    content=(
                        envelope.canonical_json(body)
                        if isinstance(body, dict)
                        else body.encode("ascii")
                    ),
                    headers=_PLAIN_HEADERS if isinstance(body, dict) else _JOSE_HEADERS,
                ),
                deadline,
            )
        except TimeoutError:
            return Outcome("retry", f"timeout posting to {endpoint} (no answer in {deadline:g} s)")
        except httpx.TimeoutException as exc:
            return Outcome("retry", f"timeout posting to {endpoint} ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Outcome("retry", f"connection error posting to {endpoint}: {exc!r}")
        status = response.status_code
        if 200 <= status < 300:
            if role != "reply" and isinstance(body, dict) and _looks_like_fhir_json(response):
                return _read_plain_ack(message_id, response)
            if role == "reply" or not _looks_like_jose(response):
                return Outcome("delivered")
            return self._read_ack(receiver, message_id, response)
        problem = f"HTTP {status} from {endpoint}"
        if status in _RETRY_STATUSES or status >= 500:
            return Outcome("retry", problem, retry_after=_retry_after(response))
        return Outcome("failed", f"{problem}: {response.text[:500]}")

    def _read_ack(
        self, receiver: Participant, message_id: str, response: httpx.Response
    ) -> Outcome:
        """The receiver's Acknowledgement in a 2xx answer (signed by its registered key)."""
        try:
            opened = envelope.open_envelope(
                response.content,
                gateway_encryption_keys(self.settings),
                max_bytes=self.settings.max_message_bytes,
            )
            envelope.verify(opened, signing_keys(receiver), who=receiver.name)
            ack = fhir_json.loads(opened.payload)
            if not isinstance(ack, dict):
                raise ValueError("the acknowledgement is not a JSON object")
            info = read_ack_header(ack)
            if info.acknowledged != message_id:
                raise ValueError(f"it answers {info.acknowledged}, not {message_id}")
        except (GatewayError, ValueError) as exc:
            # The message did arrive (2xx); only the answer is unusable.
            return Outcome(
                "delivered", f"HTTP {response.status_code}, acknowledgement refused: {exc}"
            )
        return Outcome("acknowledged", ack=ack, ack_signed=opened.signed, ack_code=info.code)

    # --- recording -------------------------------------------------------------------------

    async def _finish(self, conn: AsyncConnection, key: str, receiver: str, **values: Any) -> int:
        """Update the row while this worker holds its lease, and release the lease."""
        values.update(lease_owner=None, lease_until=None, updated_at=utc_now())
        result = await conn.execute(
            update(deliveries)
            .where(
                deliveries.c.message_key == key,
                deliveries.c.receiver == receiver,
                deliveries.c.lease_owner == self.owner,
            )
            .values(**values)
        )
        return int(result.rowcount or 0)

    def _retry_values(self, attempts: int, problem: str, retry_after: float | None) -> Any:
        if attempts >= self.settings.delivery_max_attempts:
            return {
                "status": records.FAILED,
                "last_error": f"gave up after {attempts} attempts; last: {problem}",
            }
        delay = backoff_seconds(attempts, self.settings)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.delivery_backoff_max_seconds))
        return {
            "status": records.PENDING,
            "last_error": problem,
            "next_attempt_at": utc_now() + timedelta(seconds=delay),
        }

    async def _record(self, key: str, receiver: str, outcome: Outcome) -> None:
        if outcome.kind == "skipped":
            return
        async with self.store.write("delivery outcome") as writer:
            conn = writer.conn
            delivery = await records.get_delivery(conn, key, receiver)
            if delivery is None:
                return
            attempts = delivery.attempts + (1 if outcome.posted else 0)
            if outcome.kind == "acknowledged":
                assert outcome.ack is not None and outcome.ack_signed is not None  # noqa: S101
                record = await records.get_message(conn, key)
                if record is not None:
                    # The receiver's word counts even if this worker's lease ran out.
                    await route_ack(writer, record, receiver, outcome.ack, outcome.ack_signed)
                values: dict[str, Any] = {"attempts": attempts}
                if outcome.ack_code == ACK_TRANSIENT:
                    values.update(
                        self._retry_values(
                            attempts, f"transient-error acknowledgement from {receiver}", None
                        )
                    )
                await self._finish(conn, key, receiver, **values)
                return
            if delivery.lease_owner != self.owner or delivery.status != records.PENDING:
                log.warning("delivery of %s to %s: lease lost, outcome dropped", key, receiver)
                return
            if outcome.kind == "delivered":
                values = {"status": records.DELIVERED, "last_error": outcome.error}
            elif outcome.kind == "retry":
                values = self._retry_values(attempts, str(outcome.error), outcome.retry_after)
            elif outcome.kind == "to-mailbox":
                values = {"mode": MAILBOX, "last_error": f"{receiver} has no endpoint: mailbox"}
            else:
                values = {"status": records.FAILED, "last_error": outcome.error}
            await self._finish(conn, key, receiver, attempts=attempts, **values)
        if values.get("status") == records.FAILED:
            log.warning("delivery of %s to %s failed: %s", key, receiver, values["last_error"])


class RunningWorker:
    """A ``DeliveryWorker`` running as a task of this process (the app's lifespan owns it)."""

    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[int] = asyncio.get_running_loop().create_task(
            worker.run(self.stopping), name=f"delivery-worker {worker.owner}"
        )

    async def stop(self) -> None:
        """Stop taking rows; give in-flight deliveries a grace period, then cancel them.

        A cancelled delivery's row keeps its lease until it runs out and is then delivered
        again (by this or another process): at least once, never lost.
        """
        self.stopping.set()
        try:
            await asyncio.wait_for(
                asyncio.shield(self.task), self.worker.settings.delivery_shutdown_grace_seconds
            )
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        except Exception:
            log.exception("delivery worker %s ended with an error", self.worker.owner)
        finally:
            await self.worker.aclose()


def start_delivery_worker(store: Store, settings: Settings) -> RunningWorker:
    """Start the in-process delivery worker (``delivery_in_process``)."""
    return RunningWorker(DeliveryWorker(store, settings))


async def run_deliveries(
    settings: Settings, *, once: bool, stop: asyncio.Event | None = None
) -> int:
    """``brobygger deliver``: deliver what is due (``once``) or until ``stop`` is set.

    Returns the number of delivery attempts made.
    """
    database = Database(settings.database_url)
    try:
        await database.migrate()
        store = Store(database, fhir_base=settings.fhir_base)
        async with DeliveryWorker(store, settings) as worker:
            if not once:
                return await worker.run(stop or asyncio.Event())
            total = 0
            # Everything due now, batch after batch (bounded: a row retried at once when the
            # back-off is zero must not keep this loop going).
            for _ in range(1000):
                claimed = await worker.run_once()
                total += claimed
                if claimed < settings.delivery_batch_size:
                    break
            return total
    finally:
        await database.dispose()
