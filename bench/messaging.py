"""Secure messaging: rehabilitation-plan messages per second end to end, vs. the store alone.

End to end is what a hospital's system and the gateway do for one message: the client wraps a
GGOP document in a MedCom message (a new MessageHeader.id and a new plan each time), signs
(ES256) and encrypts it (ECDH-ES+A256KW/A256GCM) to the gateway's key, and posts it to
``POST /fhir/$process-message`` over a loopback socket (a gateway started with ``python -m
uvicorn`` in a separate process, demo participants, a real access token); the gateway
decrypts, verifies, validates, maps, stores, records the message and its delivery and answers
with a signed Acknowledgement, which the client verifies (``ok`` expected for every message).

The baseline, measured in the same run on the same database: the same GGOP sample mapped once
(``pipeline.prepare``) to its transaction Bundle, given a fresh document identity per
iteration (plan id, SHA-256, derived ids: nothing dedupes) and stored through
``pipeline.store_prepared`` (``run_transaction_in`` plus ingest's checks) in one store
transaction each, by as many concurrent callers as there are senders.

With ``--attachment-kb K`` (256 in the README's run) the same gateway also takes MedCom
CareCommunications carrying a K KB PDF attachment each (what MedCom systems send, above
joserfc's default 64 KiB JWE cap), end to end over the same socket: messages and megabytes
per second, round trip.

    .venv/bin/python -m bench.messaging [--store sqlite|postgresql|both] [--messages N]
                                        [--concurrency C] [--delivery off|on|both]
                                        [--attachment-kb K] [--json out]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from joserfc.jwk import Key, import_key
from lxml import etree
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from bench import raw_baseline
from bench._gateway import free_port, running_gateway
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.data import DataPath
from gateway.ingest import pipeline
from gateway.messaging import acks, envelope
from gateway.messaging.keys import gateway_encryption_keys, gateway_signing_key, keys_by_kid
from gateway.messaging.keys import signing_keys as participant_signing_keys
from gateway.messaging.message import (
    CARE_COMMUNICATION,
    REHAB_PLAN,
    binary_resource,
    build_message,
    parse_message,
)
from gateway.participants.demo import DEMO_PARTICIPANTS, ensure_demo_participants
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import deliveries, participants, resources
from mappings import map_document

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "formats"
    / "samples"
    / "rehab-plan"
    / "ggop-shoulder-electrician.xml"
)
GGOP_NS = "urn:oio:medcom:municipality:1.0.4"
SENDER = "auh-ortopaedi"  # the sample's Sender (SOR 265161000016000)
RECEIVER = "aarhus-genoptraening"  # the sample's Receiver (SOR 521451000016006)
SCOPE = "system/*.read system/*.write"
PG_ADMIN_URL = os.environ.get("BROBYGGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
WARM_UP = 3
_URN_UUID = re.compile(r"urn:uuid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")

err_console = Console(stderr=True)
console = Console(width=None if sys.stdout.isatty() else 130)


def _demo(name: str) -> Participant:
    return next(p for p in DEMO_PARTICIPANTS if p.name == name)


# --- progress and measuring ------------------------------------------------------------------


class Ticker:
    """A rich bar on a terminal; in a log file a line every tenth instead."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.quiet = not err_console.is_terminal
        columns = (*Progress.get_default_columns(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=err_console, transient=True, disable=self.quiet)
        self.task = self.progress.add_task(label, total=total)
        self.started = time.perf_counter()

    def __enter__(self) -> Ticker:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        elapsed = time.perf_counter() - self.started
        err_console.print(f"  {self.label}: {self.done}/{self.total} in {elapsed:.1f} s")

    def advance(self) -> None:
        before, self.done = self.done, self.done + 1
        self.progress.advance(self.task)
        if self.quiet and self.done * 10 // self.total > before * 10 // self.total:
            if self.done < self.total:
                elapsed = time.perf_counter() - self.started
                err_console.print(f"  {self.label}: {self.done}/{self.total} ({elapsed:.1f} s)")


async def run_calls(
    count: int, workers: list[Callable[[int], Awaitable[None]]], label: str
) -> float:
    """Exactly ``count`` calls spread over the workers (one concurrent loop each); seconds."""
    counter = itertools.count()
    with Ticker(label, count) as ticker:

        async def loop(call: Callable[[int], Awaitable[None]]) -> None:
            while (i := next(counter)) < count:
                await call(i)
                ticker.advance()

        started = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in workers))
        return time.perf_counter() - started


def _ms(samples: list[float]) -> float:
    return round(1000 * statistics.fmean(samples), 3) if samples else 0.0


def _percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# --- the document: a new plan each time ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The GGOP sample and where its plan id (Letter/Identifier) sits in the bytes."""

    xml: bytes
    letter_id: str

    @classmethod
    def load(cls, path: Path = SAMPLE) -> Sample:
        xml = path.read_bytes()
        root = etree.fromstring(xml)
        found = root.find(
            f"{{{GGOP_NS}}}RehabilitationPlan/{{{GGOP_NS}}}Letter/{{{GGOP_NS}}}Identifier"
        )
        if found is None or not found.text:
            raise SystemExit(f"{path}: no RehabilitationPlan/Letter/Identifier")
        letter_id = found.text
        if xml.count(cls._element(letter_id)) != 1:
            raise SystemExit(f"{path}: the plan id {letter_id!r} is not unique in the bytes")
        return cls(xml, letter_id)

    @staticmethod
    def _element(letter_id: str) -> bytes:
        return f"<Identifier>{letter_id}</Identifier>".encode()

    def variant(self, suffix: str) -> bytes:
        """The same plan under a new id: a new document (new bytes, new business identifier)."""
        return self.xml.replace(
            self._element(self.letter_id), self._element(self.letter_id + suffix)
        )


def document_uuids(sample: Sample, prepared: pipeline.Prepared) -> frozenset[str]:
    """The ``urn:uuid`` ids of the mapped plan that change with the document's identity.

    The mapper derives ids from the document key (the plan's resources) or from shared
    identifiers (Patient, Organizations, the signing doctor's role): mapping the plan under
    another id tells which are which.
    """
    other = map_document(sample.variant("-probe"), now=datetime.now(UTC)).bundle
    mine = set(_URN_UUID.findall(json.dumps(prepared.bundle)))
    return frozenset(mine - set(_URN_UUID.findall(json.dumps(other))))


def fresh_identity(
    prepared: pipeline.Prepared, varying: frozenset[str], suffix: str
) -> pipeline.Prepared:
    """The prepared plan as if it had another Letter/Identifier (and so other bytes).

    Rewrites the plan id (ServiceRequest and DocumentReference identifiers, the source-document
    tag), the SHA-256 (masterIdentifier, the conditional update) and the ``urn:uuid`` ids the
    mapper derives from the document (fullUrls, derived identifiers, the Provenance id): what
    mapping the changed document gives, without mapping it again.
    """
    source = prepared.mapped.source
    text = json.dumps(prepared.bundle, ensure_ascii=False)
    old_id = source.value.rsplit("/", 1)[-1]
    new_sha = uuid.uuid4().hex + uuid.uuid4().hex
    renamed = {u: str(uuid.uuid4()) for u in varying}
    text = text.replace(old_id, old_id + suffix).replace(source.sha256, new_sha)
    if renamed:
        text = re.sub("|".join(map(re.escape, renamed)), lambda m: renamed[m.group(0)], text)
    new_source = replace(
        source,
        value=source.value.replace(old_id, old_id + suffix),
        key=source.key.replace(old_id, old_id + suffix),
        sha256=new_sha,
    )
    mapped = replace(prepared.mapped, source=new_source)
    return replace(prepared, mapped=mapped, bundle=json.loads(text))


# --- the databases ---------------------------------------------------------------------------


@contextmanager
def scratch_database(kind: str, work: Path, admin_url: str) -> Iterator[str]:
    """A new SQLite file, or a new PostgreSQL database created here and dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{work}/messaging-bench.db"
        return
    name = f"brobygger_bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise SystemExit(f"PostgreSQL at {admin_url} is not usable: {exc}") from exc
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def count_resources(database_url: str) -> int:
    database = Database(database_url)
    try:
        async with database.engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(resources))).scalar()
        return int(n or 0)
    finally:
        await database.dispose()


async def delivery_counts(database_url: str) -> dict[str, int]:
    """Endpoint-mode deliveries by status (the mailbox ones are the receivers' to fetch)."""
    database = Database(database_url)
    try:
        async with database.engine.connect() as conn:
            rows = await conn.execute(
                select(deliveries.c.status, func.count())
                .where(deliveries.c.mode == "endpoint")
                .group_by(deliveries.c.status)
            )
            return {str(status): int(n) for status, n in rows}
    finally:
        await database.dispose()


async def set_endpoint(database_url: str, participant: str, endpoint: str | None) -> None:
    """The receiver's system answers at ``endpoint`` (None: it polls its mailbox)."""
    database = Database(database_url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(
                update(participants)
                .where(participants.c.name == participant)
                .values(endpoint=endpoint)
            )
    finally:
        await database.dispose()


# --- the baseline: the store alone -----------------------------------------------------------


@dataclass(slots=True)
class Breakdown:
    """Per-message costs of the steps, measured one at a time in this process."""

    samples: int = 0
    client_sign_encrypt: list[float] = field(default_factory=list)
    gateway_decrypt_verify: list[float] = field(default_factory=list)
    map_validate: list[float] = field(default_factory=list)
    store_transaction: list[float] = field(default_factory=list)
    ack_sign: list[float] = field(default_factory=list)
    client_verify_ack: list[float] = field(default_factory=list)

    def as_ms(self) -> dict[str, float | int]:
        return {
            "samples": self.samples,
            "client_sign_encrypt": _ms(self.client_sign_encrypt),
            "gateway_decrypt_verify_parse": _ms(self.gateway_decrypt_verify),
            "map_validate": _ms(self.map_validate),
            "store_transaction": _ms(self.store_transaction),
            "gateway_ack_build_sign": _ms(self.ack_sign),
            "client_verify_ack": _ms(self.client_verify_ack),
        }


@dataclass(slots=True)
class StoreSide:
    seconds: float
    documents: int
    resources_per_document: float
    breakdown: Breakdown
    # The same rows (one document's) written straight through the driver, in the same run.
    raw_seconds: float = 0.0
    raw_rows_per_transaction: int = 0


async def store_side(
    settings: Settings,
    sample: Sample,
    *,
    count: int,
    concurrency: int,
    breakdown: int,
    run: str,
    analyze: bool,
) -> StoreSide:
    database = Database(settings.database_url)
    try:
        await database.migrate()
        store = Store(database, fhir_base=settings.fhir_base)
        await ensure_demo_participants(settings, database, store)
        await store.refresh_statistics()
        now = datetime.now(UTC)
        template = await pipeline.prepare(store, sample.xml, sender_participant=SENDER, now=now)
        varying = document_uuids(sample, template)

        async def store_one(prepared: pipeline.Prepared) -> None:
            async with DataPath.for_operator(store).write("ingest", link_identities=True) as writer:
                result = await pipeline.store_prepared(writer, prepared, now=now)
            if result.status != "accepted":
                raise SystemExit(f"the store saw a known document ({result.status}): not fresh")

        # Warm-up (first Patient, Organizations, caches), outside the measurement.
        for i in range(WARM_UP - 1):
            await store_one(fresh_identity(template, varying, f"-W{run}{i}"))
        # The last warm-up document's rows are what the raw baseline writes again and again.
        known = await raw_baseline.keys_of(settings.database_url)
        await store_one(fresh_identity(template, varying, f"-W{run}{WARM_UP - 1}"))
        created_keys = await raw_baseline.keys_of(settings.database_url) - known
        rowset = await raw_baseline.capture(settings.database_url, created_keys)
        if analyze and not database.is_sqlite:
            # What autovacuum does on any PostgreSQL that runs it. Never analysed, the same
            # search run again and again gets a generic plan that reads every token row of
            # the type (PREPAREd by psycopg; see bench/README.md): slower with every document.
            async with database.engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE")
        fresh = [fresh_identity(template, varying, f"-S{run}{i}") for i in range(count)]
        before = await count_resources(settings.database_url)

        async def call(i: int) -> None:
            await store_one(fresh[i])

        seconds = await run_calls(count, [call] * concurrency, "store transactions")
        created = await count_resources(settings.database_url) - before
        raw_seconds = await raw_baseline.measure(settings.database_url, rowset, count)
        steps = await measure_breakdown(settings, store, sample, breakdown, run)
        return StoreSide(seconds, count, created / count, steps, raw_seconds, rowset.total_rows)
    finally:
        await database.dispose()


async def measure_breakdown(
    settings: Settings, store: Store, sample: Sample, count: int, run: str
) -> Breakdown:
    """Each step of one message, one message at a time, with the functions the gateway uses."""
    steps = Breakdown(samples=count)
    if count == 0:
        return steps
    sender = _demo(SENDER)
    receivers = [(_demo(RECEIVER), "primary")]
    client_key = read_private_key(private_key_path(settings.keys_dir, SENDER))
    gateway_keys = gateway_encryption_keys(settings)
    gateway_public = envelope_public(gateway_keys[0])
    ack_key = gateway_signing_key(settings)
    ack_public = {envelope.kid_of(ack_key): envelope_public(ack_key)}
    registered = await ParticipantDirectory(store.database).get(SENDER)
    sender_keys = participant_signing_keys(registered)
    with Ticker("step breakdown", count) as ticker:
        for i in range(count):
            message = build_message(
                event=REHAB_PLAN,
                sender=sender,
                receivers=receivers,
                content=[binary_resource(sample.variant(f"-B{run}{i}"))],
            )
            t0 = time.perf_counter()
            body = envelope.seal(message, client_key, gateway_public).encode("ascii")
            t1 = time.perf_counter()
            opened = envelope.open_envelope(body, gateway_keys)
            envelope.verify(opened, sender_keys, who=SENDER)
            parsed = parse_message(json.loads(opened.payload))
            t2 = time.perf_counter()
            assert parsed.binary is not None
            now = datetime.now(UTC)
            prepared = await pipeline.prepare(
                store, parsed.binary, sender_participant=SENDER, now=now
            )
            t3 = time.perf_counter()
            async with DataPath.for_operator(store).write(
                "message", link_identities=True
            ) as writer:
                result = await pipeline.store_prepared(writer, prepared, now=now)
            t4 = time.perf_counter()
            if result.status != "accepted":
                raise SystemExit(f"breakdown: the store saw a known document ({result.status})")
            ack = acks.build_ack(acknowledged=parsed.header_id, code=acks.OK)
            signed = envelope.sign(envelope.canonical_json(ack), ack_key)
            t5 = time.perf_counter()
            envelope.read_signed(signed, ack_public)
            t6 = time.perf_counter()
            steps.client_sign_encrypt.append(t1 - t0)
            steps.gateway_decrypt_verify.append(t2 - t1)
            steps.map_validate.append(t3 - t2)
            steps.store_transaction.append(t4 - t3)
            steps.ack_sign.append(t5 - t4)
            steps.client_verify_ack.append(t6 - t5)
            ticker.advance()
    return steps


def envelope_public(key: Key) -> Key:
    return import_key(key.as_dict(private=False))


# --- the gateway and the receiving system ----------------------------------------------------


@contextmanager
def gateway_process(base: Settings, *, delivery: bool) -> Iterator[Settings]:
    """``python -m uvicorn gateway.app:create_app --factory``, one worker, demo participants."""
    port = free_port()
    settings = base.model_copy(
        update={"base_url": f"http://127.0.0.1:{port}", "delivery_in_process": delivery}
    )
    with running_gateway(
        settings, {"BROBYGGER_DELIVERY_IN_PROCESS": str(delivery).lower()}
    ) as live:
        yield live


class Sink:
    """The rehab unit's system at its endpoint: takes every delivery, answers 200 (no ack)."""

    def __init__(self) -> None:
        self.received = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = bool(message.get("more_body", False))
        self.received += 1
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})


@contextmanager
def receiving_system(*, enabled: bool) -> Iterator[tuple[str | None, Sink | None]]:
    """The sink under uvicorn on a loopback port, in a thread of this process."""
    if not enabled:
        yield None, None
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sink = Sink()
    config = uvicorn.Config(
        sink, host="127.0.0.1", port=port, log_config=None, lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the receiving system did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}/messages", sink
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# --- the senders ----------------------------------------------------------------------------


class TokenSource:
    """A real access token from ``POST /auth/token``, renewed before it runs out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.token = ""
        self.renew_at = 0.0
        self.lock = asyncio.Lock()

    async def get(self, client: httpx.AsyncClient) -> str:
        async with self.lock:
            if time.monotonic() >= self.renew_at:
                key = read_private_key(private_key_path(self.settings.keys_dir, SENDER))
                response = await client.post(
                    self.settings.token_url,
                    data={
                        "grant_type": "client_credentials",
                        "client_assertion_type": CLIENT_ASSERTION_TYPE,
                        "client_assertion": make_client_assertion(
                            key, SENDER, self.settings.token_url
                        ),
                        "scope": SCOPE,
                    },
                )
                if response.status_code != 200:
                    raise SystemExit(
                        f"/auth/token answered {response.status_code}: {response.text}"
                    )
                answer = response.json()
                self.token = str(answer["access_token"])
                self.renew_at = time.monotonic() + max(10, int(answer["expires_in"]) - 60)
            return self.token


@dataclass(slots=True)
class HttpSide:
    delivery: str
    seconds: float
    messages: int
    codes: dict[str, int]
    sign_encrypt: list[float]
    round_trip: list[float]
    verify_ack: list[float]
    resources_per_message: float
    deliveries: dict[str, Any] | None = None


async def http_side(
    settings: Settings,
    sample: Sample,
    *,
    count: int,
    concurrency: int,
    delivery: str,
    run: str,
    drain_timeout: float,
    sink: Sink | None,
) -> HttpSide:
    sender = _demo(SENDER)
    receivers = [(_demo(RECEIVER), "primary")]
    client_key = read_private_key(private_key_path(settings.keys_dir, SENDER))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=settings.base_url, timeout=60, limits=limits)
        for _ in range(concurrency)
    ]
    try:
        # What any client does: the gateway's public keys from its JWKS.
        jwks = (await clients[0].get("/.well-known/jwks.json")).raise_for_status().json()
        gateway_enc = next(iter(keys_by_kid(jwks, "enc").values()))
        gateway_sig = keys_by_kid(jwks, "sig")
        tokens = TokenSource(settings)
        await tokens.get(clients[0])
        codes: dict[str, int] = {}
        sign_encrypt: list[float] = []
        round_trip: list[float] = []
        verify_ack: list[float] = []

        def caller(client: httpx.AsyncClient, tag: str) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                message = build_message(
                    event=REHAB_PLAN,
                    sender=sender,
                    receivers=receivers,
                    content=[binary_resource(sample.variant(f"-{tag}{run}{i}"))],
                )
                header_id = message["entry"][0]["resource"]["id"]
                t0 = time.perf_counter()
                body = envelope.seal(message, client_key, gateway_enc)
                t1 = time.perf_counter()
                response = await client.post(
                    "/fhir/$process-message",
                    content=body.encode("ascii"),
                    headers={
                        "Content-Type": envelope.MEDIA_TYPE,
                        "Accept": envelope.MEDIA_TYPE,
                        "Authorization": f"Bearer {await tokens.get(client)}",
                    },
                )
                t2 = time.perf_counter()
                if response.headers.get("content-type", "").split(";")[0] != envelope.MEDIA_TYPE:
                    raise SystemExit(f"message {i}: HTTP {response.status_code}: {response.text}")
                ack = envelope.read_signed(response.text, gateway_sig)
                acknowledged, code = acks.read_ack(ack)
                t3 = time.perf_counter()
                if acknowledged != header_id:
                    raise SystemExit(f"message {i}: the acknowledgement answers another message")
                codes[code] = codes.get(code, 0) + 1
                if tag == "M":
                    sign_encrypt.append(t1 - t0)
                    round_trip.append(t2 - t1)
                    verify_ack.append(t3 - t2)

            return call

        # Warm-up (connections, caches in the gateway) outside the measurement.
        warm = caller(clients[0], "H")
        for i in range(WARM_UP):
            await warm(i)
        if codes.get(acks.OK) != WARM_UP:
            raise SystemExit(f"warm-up messages were not accepted: {codes}")
        codes.clear()
        before = await count_resources(settings.database_url)
        seconds = await run_calls(
            count, [caller(c, "M") for c in clients], f"messages (delivery {delivery})"
        )
        created = await count_resources(settings.database_url) - before
    finally:
        for client in clients:
            await client.aclose()
    side = HttpSide(
        delivery, seconds, count, codes, sign_encrypt, round_trip, verify_ack, created / count
    )
    if sink is not None:
        side.deliveries = await drain(settings.database_url, sink, count + WARM_UP, drain_timeout)
    return side


def care_communication(kb: int, i: int) -> list[dict[str, Any]]:
    """A MedCom CareCommunication (category other) with a ``kb`` KB PDF attachment."""
    patient_id = str(uuid.uuid4())
    attachment = (b"%PDF-1.4\n" + os.urandom(kb * 1024))[: kb * 1024]
    return [
        {
            "resourceType": "Communication",
            "status": "unknown",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://medcomfhir.dk/ig/terminology/CodeSystem/"
                            "medcom-careCommunication-categoryCodes",
                            "code": "other",
                        }
                    ]
                }
            ],
            "subject": {"reference": f"Patient/{patient_id}"},
            "topic": {"text": f"Epikrise {i}"},
            "payload": [
                {"contentString": "Epikrise vedhæftet."},
                {
                    "contentAttachment": {
                        "contentType": "application/pdf",
                        "title": "epikrise.pdf",
                        "data": base64.b64encode(attachment).decode("ascii"),
                    }
                },
            ],
        },
        {
            "resourceType": "Patient",
            "id": patient_id,
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": f"25094{i % 10000:05d}"}],
            "name": [{"use": "official", "family": "Elmer"}],
        },
    ]


async def attachment_side(
    settings: Settings, *, kb: int, count: int, concurrency: int
) -> dict[str, Any]:
    """CareCommunications with a ``kb`` KB attachment, end to end (sign, encrypt, POST, ack)."""
    sender = _demo(SENDER)
    receivers = [(_demo(RECEIVER), "primary")]
    client_key = read_private_key(private_key_path(settings.keys_dir, SENDER))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=settings.base_url, timeout=120, limits=limits)
        for _ in range(concurrency)
    ]
    codes: dict[str, int] = {}
    round_trip: list[float] = []
    sizes: list[int] = []
    try:
        jwks = (await clients[0].get("/.well-known/jwks.json")).raise_for_status().json()
        gateway_enc = next(iter(keys_by_kid(jwks, "enc").values()))
        gateway_sig = keys_by_kid(jwks, "sig")
        tokens = TokenSource(settings)

        def caller(client: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                content = care_communication(kb, i)
                message = build_message(
                    event=CARE_COMMUNICATION,
                    sender=sender,
                    receivers=receivers,
                    content=content,
                    focus=content[:1],
                )
                body = envelope.seal(message, client_key, gateway_enc).encode("ascii")
                t0 = time.perf_counter()
                response = await client.post(
                    "/fhir/$process-message",
                    content=body,
                    headers={
                        "Content-Type": envelope.MEDIA_TYPE,
                        "Accept": envelope.MEDIA_TYPE,
                        "Authorization": f"Bearer {await tokens.get(client)}",
                    },
                )
                round_trip.append(time.perf_counter() - t0)
                if response.headers.get("content-type", "").split(";")[0] != envelope.MEDIA_TYPE:
                    raise SystemExit(
                        f"attachment {i}: HTTP {response.status_code}: {response.text}"
                    )
                _, code = acks.read_ack(envelope.read_signed(response.text, gateway_sig))
                codes[code] = codes.get(code, 0) + 1
                sizes.append(len(body))

            return call

        seconds = await run_calls(
            count, [caller(c) for c in clients], f"messages with {kb} KB attachments"
        )
    finally:
        for client in clients:
            await client.aclose()
    return {
        "attachment_kb": kb,
        "messages": count,
        "acknowledgements": codes,
        "ok": codes.get(acks.OK, 0),
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 2),
        "envelope_bytes_mean": round(statistics.mean(sizes)) if sizes else 0,
        "megabytes_per_second": round(sum(sizes) / seconds / 1e6, 2),
        "round_trip_ms": {
            "mean": _ms(round_trip),
            "p50": _percentile(round_trip, 0.5),
            "p95": _percentile(round_trip, 0.95),
        },
    }


async def drain(database_url: str, sink: Sink, expected: int, timeout: float) -> dict[str, Any]:
    """Wait until the worker has delivered every message to the receiving system."""
    started = time.perf_counter()
    counts: dict[str, int] = {}
    with Ticker("deliveries drained", expected) as ticker:
        while time.perf_counter() - started < timeout:
            counts = await delivery_counts(database_url)
            finished = sum(n for status, n in counts.items() if status != "pending")
            while ticker.done < min(finished, expected):
                ticker.advance()
            if counts.get("pending", 0) == 0 and sum(counts.values()) >= expected:
                break
            await asyncio.sleep(0.2)
    return {
        "expected": expected,
        "by_status": counts,
        "received_by_receiver": sink.received,
        "drained_after_measurement_seconds": round(time.perf_counter() - started, 2),
    }


# --- the run -------------------------------------------------------------------------------


def _describe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def run_store(args: argparse.Namespace, kind: str, sample: Sample, run: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="brobygger-msg-bench-") as tmp:
        work = Path(tmp)
        with scratch_database(kind, work, args.postgresql_admin_url) as database_url:
            err_console.print(
                f"[bold]{kind}[/]: {args.messages} messages, {args.concurrency} concurrent "
                f"senders on {_describe(database_url)}"
            )
            settings = Settings(
                environment="development",
                database_url=database_url,
                base_url="http://bench.invalid",
                var_dir=work / "var",
                keys_dir=work / "keys",
                demo=True,
                delivery_in_process=False,
            )
            baseline = asyncio.run(
                store_side(
                    settings,
                    sample,
                    count=args.messages,
                    concurrency=args.concurrency,
                    breakdown=min(args.breakdown, args.messages),
                    run=f"{run}{kind[0]}",
                    analyze=args.analyze,
                )
            )
            sides: list[HttpSide] = []
            for mode in args.delivery_modes:
                with receiving_system(enabled=mode == "on") as (endpoint, sink):
                    # Delivery on: the rehab unit's system has an endpoint; off: a mailbox.
                    asyncio.run(set_endpoint(database_url, RECEIVER, endpoint))
                    with gateway_process(settings, delivery=mode == "on") as live:
                        sides.append(
                            asyncio.run(
                                http_side(
                                    live,
                                    sample,
                                    count=args.messages,
                                    concurrency=args.concurrency,
                                    delivery=mode,
                                    run=f"{run}{kind[0]}{mode}",
                                    drain_timeout=args.drain_timeout,
                                    sink=sink,
                                )
                            )
                        )
                    asyncio.run(set_endpoint(database_url, RECEIVER, None))
            attachments = None
            if args.attachment_kb:
                with gateway_process(settings, delivery=False) as live:
                    attachments = asyncio.run(
                        attachment_side(
                            live,
                            kb=args.attachment_kb,
                            count=args.messages,
                            concurrency=args.concurrency,
                        )
                    )
            described = _describe(database_url)
    store_rate = baseline.documents / baseline.seconds
    raw_rate = baseline.documents / baseline.raw_seconds
    for side in sides:
        if side.resources_per_message != baseline.resources_per_document:
            # Both sides must store the same thing, else the ratio compares different work.
            err_console.print(
                f"[red]warning[/]: {kind}, delivery {side.delivery}: "
                f"{side.resources_per_message:.2f} resources created per message, "
                f"{baseline.resources_per_document:.2f} per document in the store baseline"
            )
    return {
        "store": kind,
        "database_url": described,
        "analyzed_after_warm_up": args.analyze and kind == "postgresql",
        "store_transactions": {
            "documents": baseline.documents,
            "seconds": round(baseline.seconds, 3),
            "per_second": round(store_rate, 2),
            "resources_created_per_document": round(baseline.resources_per_document, 2),
        },
        # The same rows through the same driver, executemany per table, one tx each.
        "raw_store_tx_per_second": round(raw_rate, 2),
        "raw_rows_per_transaction": baseline.raw_rows_per_transaction,
        "ratio_store_to_raw": round(store_rate / raw_rate, 3),
        "breakdown_ms": baseline.breakdown.as_ms(),
        "http": [
            {
                "delivery": side.delivery,
                "messages": side.messages,
                "acknowledgements": side.codes,
                "ok": side.codes.get(acks.OK, 0),
                "seconds": round(side.seconds, 3),
                "per_second": round(side.messages / side.seconds, 2),
                "ratio_to_store": round(side.messages / side.seconds / store_rate, 3),
                "resources_created_per_message": round(side.resources_per_message, 2),
                "same_resources_as_store": side.resources_per_message
                == baseline.resources_per_document,
                "client_sign_encrypt_ms": _ms(side.sign_encrypt),
                "client_verify_ack_ms": _ms(side.verify_ack),
                "round_trip_ms": {
                    "mean": _ms(side.round_trip),
                    "p50": _percentile(side.round_trip, 0.5),
                    "p95": _percentile(side.round_trip, 0.95),
                },
                "deliveries": side.deliveries,
            }
            for side in sides
        ],
        "attachments": attachments,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()
    sample = Sample.load()
    run_id = uuid.uuid4().hex[:6]
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    return {
        "sample": f"rehab-plan/{SAMPLE.name}",
        "sender": SENDER,
        "receiver": RECEIVER,
        "messages": args.messages,
        "concurrency": args.concurrency,
        "envelope": "JWS ES256 inside JWE ECDH-ES+A256KW/A256GCM",
        "http_server": "python -m uvicorn gateway.app:create_app --factory (separate process, "
        "1 worker), loopback, one httpx.AsyncClient (one connection) per sender",
        "stores": [run_store(args, kind, sample, run_id) for kind in stores],
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        # Other work on the machine shares the CPUs with the clients and the gateway.
        "load_average_at_start": [round(x, 2) for x in load],
    }


def show(report: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"rehabilitation-plan messages end to end: {report['messages']} per measurement, "
            f"{report['concurrency']} concurrent senders"
        )
    )
    for name, justify in (
        ("store", "left"),
        ("store tx/s", "right"),
        ("raw tx/s", "right"),
        ("store / raw", "right"),
        ("delivery", "left"),
        ("messages/s", "right"),
        ("messages / store", "right"),
        ("ok", "right"),
        ("round trip p50 / p95 ms", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for entry in report["stores"]:
        for http in entry["http"]:
            trip = http["round_trip_ms"]
            table.add_row(
                entry["store"],
                f"{entry['store_transactions']['per_second']:.1f}",
                f"{entry['raw_store_tx_per_second']:.1f}",
                f"{entry['ratio_store_to_raw']:.3f}",
                http["delivery"],
                f"{http['per_second']:.1f}",
                f"{http['ratio_to_store']:.2f}",
                f"{http['ok']}/{http['messages']}",
                f"{trip['p50']:.0f} / {trip['p95']:.0f}",
            )
    console.print(table)
    steps = Table(title="one message, step by step (ms, one at a time, in-process)")
    steps.add_column("step")
    for entry in report["stores"]:
        steps.add_column(entry["store"], justify="right")
    labels = {
        "client_sign_encrypt": "client: sign + encrypt",
        "gateway_decrypt_verify_parse": "gateway: decrypt + verify + parse",
        "map_validate": "gateway: map + validate + sender checks",
        "store_transaction": "gateway: store transaction",
        "gateway_ack_build_sign": "gateway: build + sign the ack",
        "client_verify_ack": "client: verify the ack",
    }
    for key, label in labels.items():
        steps.add_row(label, *(f"{e['breakdown_ms'][key]:.2f}" for e in report["stores"]))
    if all(e["breakdown_ms"]["samples"] for e in report["stores"]):
        console.print(steps)
    for entry in report["stores"]:
        a = entry.get("attachments")
        if a:
            trip = a["round_trip_ms"]
            console.print(
                f"{entry['store']}, CareCommunications with {a['attachment_kb']} KB attachments: "
                f"{a['per_second']:.1f} messages/s ({a['megabytes_per_second']:.2f} MB/s of "
                f"{a['envelope_bytes_mean']} byte envelopes), ok {a['ok']}/{a['messages']}, "
                f"round trip p50 / p95 {trip['p50']:.0f} / {trip['p95']:.0f} ms"
            )
        for http in entry["http"]:
            if http["deliveries"] is not None:
                d = http["deliveries"]
                console.print(
                    f"{entry['store']}, delivery on: {d['by_status']} of {d['expected']}, "
                    f"{d['received_by_receiver']} received by the rehab unit's system, "
                    f"drained {d['drained_after_measurement_seconds']} s after the last ack"
                )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.messaging", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--messages", type=int, default=300, help="messages per measurement")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent senders")
    parser.add_argument(
        "--delivery",
        choices=("off", "on", "both"),
        default="off",
        help="the gateway's delivery worker: off (the inbound path alone, default), on (it "
        "delivers every message to a receiving system on loopback meanwhile), or both",
    )
    parser.add_argument(
        "--breakdown", type=int, default=50, help="messages for the step breakdown (0: none)"
    )
    parser.add_argument(
        "--postgresql-admin-url",
        default=PG_ADMIN_URL,
        help="a PostgreSQL server where the bench may CREATE (and afterwards DROP) its own "
        "database (default $BROBYGGER_TEST_PG_URL or the local 'test' database)",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="PostgreSQL: do not run ANALYZE after the warm-up (planner statistics; what "
        "autovacuum does), to see the store without statistics",
    )
    parser.add_argument(
        "--attachment-kb",
        type=int,
        default=0,
        help="also send MedCom CareCommunications with an attachment of this many KB "
        "(e.g. 256; 0: none)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    args.delivery_modes = ["off", "on"] if args.delivery == "both" else [args.delivery]
    for name in ("messages", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.breakdown < 0:
        parser.error("--breakdown must not be negative")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        err_console.print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
