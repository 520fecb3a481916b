"""The messaging crash test: a burst of messages while the gateway is SIGKILLed and restarted.

Shared by ``tests/messaging/test_crash.py`` (suite mode) and ``bench/messaging_crash.py`` (long
mode). Everything is real and on loopback:

* the gateway is ``brobygger serve --demo`` (``gateway.cli``) in a process group of its own, on
  a free port, against ``database_url`` (a SQLite file or a fresh PostgreSQL database), with
  its in-process delivery worker;
* the receivers' system is a small ASGI app under uvicorn (a thread of this process) that is
  registered, before the gateway starts, as the ``endpoint`` of four demo participants (two
  rehab units, two GPs). It decrypts each delivery with the receiver's dev key, verifies the
  gateway's signature, records ``MessageHeader.id`` and answers 200 with an ``ok``
  Acknowledgement signed with the receiver's dev key (the first one again for a repeat:
  receiver-side dedupe by id);
* the senders are asyncio tasks with httpx, each acting as one demo participant (hospitals →
  rehab units, job centres → GPs). Each message (a MedCom care-communication carrying a
  Communication about a Patient of its own) is built and sealed once, and the very same bytes
  are posted again after a connection error, a 503 ``transient-error`` or a 401 (then with a
  new token from ``/auth/token``) until the gateway answers with an ``ok`` Acknowledgement that
  verifies with the gateway's published key;
* a killer sends SIGKILL to the gateway's process group at random moments of the burst (after
  a random share of the messages was acknowledged, plus a random delay), and once more while
  the deliveries catch up, and starts it again each time.

Afterwards (gateway stopped) the database is read directly and the receivers' log checked:
``verify`` lists every broken promise; an empty list is a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from joserfc.jwk import Key
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import load_gateway_signing_key, private_key_path, read_private_key
from gateway.messaging import acks, envelope
from gateway.messaging.inbound import content_hash
from gateway.messaging.keys import gateway_encryption_keys, keys_by_kid
from gateway.messaging.message import CARE_COMMUNICATION, build_message
from gateway.participants.demo import DEMO_PARTICIPANTS, ensure_demo_participants
from gateway.participants.directory import Participant
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import deliveries, idx_token, messages, participants, resources

REPO_ROOT = Path(__file__).resolve().parents[2]
CPR = "urn:oid:1.2.208.176.1.2"
# The Communication of each message carries this identifier with the MessageHeader.id.
MESSAGE_SYSTEM = "urn:brobygger:test:crash-message"
SCOPE = "system/*.read system/*.write"
JOSE = {"Content-Type": envelope.MEDIA_TYPE, "Accept": envelope.MEDIA_TYPE}
# Start-up waits are counted in probes (a busy machine starts slowly; that is no failure).
START_PROBES = 6000
# Who sends to whom: hospitals → rehab units, job centres → GPs.
ROUTES: tuple[tuple[str, str], ...] = (
    ("auh-ortopaedi", "aarhus-genoptraening"),
    ("sjaellands-uh-ryg", "roskilde-traening"),
    ("jobcenter-aarhus", "laegerne-soendergade"),
    ("jobcenter-roskilde", "laegehuset-roskilde"),
    ("auh-ortopaedi", "roskilde-traening"),
    ("sjaellands-uh-ryg", "aarhus-genoptraening"),
    ("jobcenter-aarhus", "laegehuset-roskilde"),
    ("jobcenter-roskilde", "laegerne-soendergade"),
)
SENDERS: tuple[str, ...] = tuple(dict.fromkeys(frm for frm, _ in ROUTES))
RECEIVERS: tuple[str, ...] = tuple(dict.fromkeys(to for _, to in ROUTES))
# The gateway as the crash test runs it: short delivery timings so that a killed worker's
# leased rows come back within seconds; a wide replay window for retries across restarts.
GATEWAY_ENV: dict[str, str] = {
    "BROBYGGER_LOG_LEVEL": "WARNING",
    "BROBYGGER_MESSAGE_WINDOW_SECONDS": "3600",
    "BROBYGGER_ACCESS_TOKEN_LIFETIME_SECONDS": "3600",
    "BROBYGGER_DELIVERY_POLL_SECONDS": "0.2",
    "BROBYGGER_DELIVERY_TIMEOUT_SECONDS": "3",
    "BROBYGGER_DELIVERY_CONNECT_TIMEOUT_SECONDS": "1",
    "BROBYGGER_DELIVERY_LEASE_SECONDS": "5",
    "BROBYGGER_DELIVERY_BACKOFF_BASE_SECONDS": "0.2",
    "BROBYGGER_DELIVERY_BACKOFF_MAX_SECONDS": "2",
    "BROBYGGER_DELIVERY_MAX_ATTEMPTS": "50",
}


def demo(name: str) -> Participant:
    return next(p for p in DEMO_PARTICIPANTS if p.name == name)


def free_port() -> int:
    """A free loopback port (``brobygger serve`` binds it itself, by number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sync_url(url: str) -> str:
    """The same database for a synchronous SQLAlchemy engine (the checks run outside asyncio)."""
    return url.replace("sqlite+aiosqlite://", "sqlite://", 1)


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str, prefix: str = "brobygger_crash") -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``admin_url`` (dropped afterwards)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- configuration and report ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrashConfig:
    database_url: str
    workdir: Path
    messages: int = 1000
    # Sender tasks, spread over the sending participants (each message goes until ``ok``).
    concurrency: int = 32
    kills: int = 3
    seed: int | None = None
    # Gateway worker processes (``serve --workers``; more than one only on PostgreSQL).
    workers: int = 1
    # Kills happen after a random share in [first, last] of the messages was acknowledged.
    kill_window: tuple[float, float] = (0.05, 0.9)
    # Also kill once while the deliveries catch up (after the burst), then restart.
    kill_during_delivery: bool = True
    # An answer that is neither an Acknowledgement nor a 401: a 4xx fails its message; a 5xx
    # is counted in ``CrashReport.unexpected`` and retried like a transient-error, or (True)
    # stops the run at once ("storage trouble is transient-error", never a 500).
    stop_on_unexpected: bool = False
    # Longer than the gateway's own waits (e.g. its 30 s connection-pool timeout), so that
    # what it answers is seen rather than a client timeout.
    client_timeout_seconds: float = 60.0
    # The run ends by counts, never by the clock (a loaded machine is slow, not wrong):
    # a message is posted at most this many times (connection errors and transient-errors
    # included) before it counts as a problem ...
    max_posts_per_message: int = 200
    # ... and the wait for deliveries ends after this many polls (0.25 s apart) in a row in
    # which no delivery was acknowledged and nothing new arrived.
    delivery_stall_polls: int = 480
    log: Callable[[str], None] = field(default=lambda _line: None)


@dataclass(slots=True)
class Sent:
    """One message: built and sealed once, posted until acknowledged ``ok``."""

    index: int
    sender: str
    receiver: str
    header_id: str
    cpr: str
    digest: str
    body: bytes
    posts: int = 0
    code: str | None = None
    problem: str | None = None
    # When a post of it was sent but its answer lost (the gateway died): wall-clock time.
    in_doubt_at: float | None = None


@dataclass(slots=True)
class CrashReport:
    database: str
    messages: int
    concurrency: int
    workers: int
    seed: int
    kills: list[str] = field(default_factory=list)
    acknowledged: int = 0
    posts: int = 0
    connection_errors: int = 0
    in_doubt: int = 0
    # Committed before a kill, answer lost, retried: answered from the record, stored once.
    acks_lost_then_repeated: int = 0
    transient_errors: int = 0
    token_requests: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    received_posts: int = 0
    received_unique: int = 0
    setup_seconds: float = 0.0
    send_seconds: float = 0.0
    delivery_seconds: float = 0.0
    total_seconds: float = 0.0
    gateway_cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    gateway_errors: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    gateway_log_tail: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "messages": self.messages,
            "concurrency": self.concurrency,
            "gateway_workers": self.workers,
            "seed": self.seed,
            "kills": self.kills,
            "acknowledged_ok": self.acknowledged,
            "posts_answered": self.posts,
            "connection_errors": self.connection_errors,
            "in_doubt_posts": self.in_doubt,
            "acks_lost_then_repeated": self.acks_lost_then_repeated,
            "transient_errors": self.transient_errors,
            "token_requests": self.token_requests,
            "unexpected_answers": dict(self.unexpected),
            "deliveries_received": self.received_posts,
            "deliveries_received_unique": self.received_unique,
            "redelivered_duplicates": self.received_posts - self.received_unique,
            "setup_seconds": round(self.setup_seconds, 2),
            "send_seconds": round(self.send_seconds, 2),
            "delivery_catch_up_seconds": round(self.delivery_seconds, 2),
            "total_seconds": round(self.total_seconds, 2),
            "gateway_cpu_seconds": round(self.gateway_cpu_seconds, 2),
            "client_cpu_seconds": round(self.client_cpu_seconds, 2),
            "gateway_error_log_lines": dict(self.gateway_errors),
            "problems": self.problems,
        }


# --- the receivers' system -------------------------------------------------------------------


class ReceiverSystem:
    """One ASGI app playing the rehab units' and GPs' systems: ``POST /receive/{name}``."""

    def __init__(self, keys_dir: Path, names: tuple[str, ...]) -> None:
        self.names = names
        self.decrypt = {
            n: read_private_key(private_key_path(keys_dir, n, use="enc")) for n in names
        }
        self.sign = {n: read_private_key(private_key_path(keys_dir, n)) for n in names}
        self.gateway_keys: dict[str, Key] = {}
        self.lock = threading.Lock()
        self.received: list[tuple[str, str]] = []  # (receiver, MessageHeader.id), every POST
        self.first_ack: dict[tuple[str, str], str] = {}
        self.refused: list[str] = []
        self.app = Starlette(routes=[Route("/receive/{name}", self.receive, methods=["POST"])])

    @staticmethod
    def url(base: str, name: str) -> str:
        return f"{base}/receive/{name}"

    def _organization(self, name: str) -> dict[str, Any]:
        participant = demo(name)
        return {
            "resourceType": "Organization",
            "id": str(uuid.uuid4()),
            "identifier": [dict(i) for i in participant.identifiers],
            "name": participant.display,
        }

    async def receive(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.names:
            return Response("unknown receiver", status_code=404)
        try:
            body = await request.body()
        except ClientDisconnect:  # the gateway was killed while it posted
            return Response(status_code=499)
        try:
            opened = envelope.open_envelope(body, [self.decrypt[name]])
            if not opened.encrypted:
                raise ValueError("the delivery was not encrypted")
            envelope.verify(opened, self.gateway_keys, who="the gateway")
            bundle = json.loads(opened.payload)
            header_id = str(bundle["entry"][0]["resource"]["id"])
        except Exception as exc:  # recorded and refused: the run then fails
            with self.lock:
                self.refused.append(f"{name}: {type(exc).__name__}: {exc}")
            return Response(f"refused: {exc}", status_code=400)
        with self.lock:
            self.received.append((name, header_id))
            signed = self.first_ack.get((name, header_id))
            if signed is None:
                ack = acks.build_ack(
                    acknowledged=header_id, code=acks.OK, sender_org=self._organization(name)
                )
                signed = envelope.sign(envelope.canonical_json(ack), self.sign[name])
                self.first_ack[(name, header_id)] = signed
        return Response(signed, status_code=200, media_type=envelope.MEDIA_TYPE)

    def snapshot(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.received)


@contextlib.contextmanager
def serve_receiver(system: ReceiverSystem) -> Iterator[str]:
    """The receivers' app under uvicorn on a loopback socket; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        system.app, host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"receiver:{port}", daemon=True
    )
    thread.start()
    try:
        for _ in range(START_PROBES):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("the receivers' app did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# --- the gateway process ---------------------------------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 12 and int(fields[2]) == pgid:  # after "(comm)": state ppid pgrp …
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class GatewayProcess:
    """``brobygger serve --demo`` in a process group of its own; killed with SIGKILL."""

    def __init__(self, settings: Settings, port: int, logdir: Path, workers: int = 1) -> None:
        self.port = port
        self.logdir = logdir
        self.workers = workers
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.cpu_seconds = 0.0
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BROBYGGER_")},
            "BROBYGGER_ENVIRONMENT": settings.environment,
            "BROBYGGER_DATABASE_URL": settings.database_url,
            "BROBYGGER_KEYS_DIR": str(settings.keys_dir),
            "BROBYGGER_VAR_DIR": str(settings.var_dir),
            "BROBYGGER_BASE_URL": self.base_url,
            **GATEWAY_ENV,
        }

    @property
    def log_path(self) -> Path:
        return self.logdir / f"gateway-{self.starts}.log"

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("the gateway is already running")
        self.starts += 1
        command = [
            sys.executable,
            *("-c", "from gateway.cli import app; app()"),
            *("serve", "--demo", "--host", "127.0.0.1", "--port", str(self.port)),
            *("--workers", str(self.workers)),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches its workers
            )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        for _ in range(START_PROBES):
            process = self.process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"the gateway exited during start-up:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                response = await client.get(f"{self.base_url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(
            f"the gateway was not ready after {START_PROBES} probes:\n{self.log_tail()}"
        )

    def _signal(self, signum: int, wait: float) -> None:
        process = self.process
        if process is None:
            return
        self.cpu_seconds += group_cpu_seconds(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        # Workers of a multi-process gateway die with the group; make sure none is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the gateway's process group (only the processes this object started)."""
        self._signal(signal.SIGKILL, 30)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it has not ended after 20 s."""
        self._signal(signal.SIGTERM, 20)

    def errors(self) -> Counter[str]:
        """ERROR lines of every run's log, by logger and exception type."""
        found: Counter[str] = Counter()
        for path in sorted(self.logdir.glob("gateway-*.log")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    entry = json.loads(line)
                    if entry.get("level") == "ERROR":
                        found[f"{entry.get('logger')}: {entry.get('error')}"] += 1
        return found

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


# --- setting up ------------------------------------------------------------------------------


async def prepare_database(settings: Settings, endpoints: dict[str, str]) -> None:
    """Migrate, register the demo participants (dev keys) and the receivers' endpoints.

    The gateway's own keys are created here too, so that no key file is being written when
    the gateway is killed.
    """
    database = Database(settings.database_url)
    try:
        await database.migrate()
        store = Store(database, fhir_base=settings.fhir_base)
        await ensure_demo_participants(settings, database, store)
        async with database.engine.begin() as conn:
            for name, url in endpoints.items():
                await conn.execute(
                    update(participants)
                    .where(participants.c.name == name)
                    .values(endpoint=url, mailbox=False)
                )
    finally:
        await database.dispose()
    load_gateway_signing_key(settings)
    gateway_encryption_keys(settings)


def make_messages(count: int, keys_dir: Path, gateway_enc: Key, rng: random.Random) -> list[Sent]:
    """``count`` small messages, each built and sealed once (a JWS in a JWE to the gateway)."""
    signing = {name: read_private_key(private_key_path(keys_dir, name)) for name in SENDERS}
    out: list[Sent] = []
    for index in range(count):
        sender, receiver = ROUTES[index % len(ROUTES)]
        # A patient of its own: a CPR with a valid date, unique per message.
        day, month, year = 1 + index % 28, 1 + (index // 28) % 12, (index // 336) % 100
        cpr = f"{day:02d}{month:02d}{year:02d}{index % 10000:04d}"
        header_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        patient = {
            "resourceType": "Patient",
            "id": f"p{index}",
            "identifier": [{"system": CPR, "value": cpr}],
            "name": [{"family": "Crashtest", "given": [f"Nr{index}"]}],
        }
        communication = {
            "resourceType": "Communication",
            "id": f"c{index}",
            "identifier": [{"system": MESSAGE_SYSTEM, "value": header_id}],
            "status": "completed",
            "subject": {"reference": f"Patient/p{index}"},
            "payload": [{"contentString": f"Besked {index}: opfølgning aftalt."}],
        }
        bundle = build_message(
            event=CARE_COMMUNICATION,
            sender=demo(sender),
            receivers=[(demo(receiver), "primary")],
            content=[communication, patient],
            focus=[communication],
            header_id=header_id,
        )
        body = envelope.seal(bundle, signing[sender], gateway_enc).encode("ascii")
        out.append(Sent(index, sender, receiver, header_id, cpr, content_hash(bundle), body))
    return out


# --- sending ---------------------------------------------------------------------------------


class Tokens:
    """Access tokens from ``POST /auth/token`` (client assertion signed with the dev key)."""

    def __init__(self, base_url: str, keys_dir: Path, report: CrashReport) -> None:
        self.token_url = f"{base_url}/auth/token"
        self.keys = {name: read_private_key(private_key_path(keys_dir, name)) for name in SENDERS}
        self.tokens: dict[str, str] = {}
        self.locks = {name: asyncio.Lock() for name in SENDERS}
        self.report = report

    async def get(self, client: httpx.AsyncClient, name: str) -> str:
        async with self.locks[name]:
            token = self.tokens.get(name)
            if token is not None:
                return token
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": make_client_assertion(self.keys[name], name, self.token_url),
                "scope": SCOPE,
            }
            self.report.token_requests += 1
            response = await client.post(self.token_url, data=form)
            if response.status_code != 200:
                self.report.unexpected[f"token HTTP {response.status_code}"] += 1
                raise httpx.TransportError(f"the token endpoint answered {response.status_code}")
            token = str(response.json()["access_token"])
            self.tokens[name] = token
            return token

    def forget(self, name: str, token: str) -> None:
        if self.tokens.get(name) == token:
            del self.tokens[name]


class Burst:
    """The senders and the killer, in one asyncio loop."""

    def __init__(
        self,
        config: CrashConfig,
        report: CrashReport,
        gateway: GatewayProcess,
        tokens: Tokens,
        gateway_sig: dict[str, Key],
        rng: random.Random,
    ) -> None:
        self.config = config
        self.report = report
        self.gateway = gateway
        self.tokens = tokens
        self.gateway_sig = gateway_sig
        self.rng = rng
        self.acked = 0
        self.progress = asyncio.Event()
        self.aborted: str | None = None

    async def pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.05, 0.25))

    async def send_one(self, client: httpx.AsyncClient, sent: Sent) -> None:
        """Post the same sealed bytes until the gateway acknowledges them ``ok``."""
        url = f"{self.gateway.base_url}/fhir/$process-message"
        attempts = 0
        while self.aborted is None:
            attempts += 1
            if attempts > self.config.max_posts_per_message:
                sent.problem = f"not acknowledged after {attempts - 1} attempts"
                return
            token = ""
            try:
                token = await self.tokens.get(client, sent.sender)
                response = await client.post(
                    url, content=sent.body, headers={**JOSE, "Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                self.report.connection_errors += 1
                if not isinstance(exc, httpx.ConnectError) and token:
                    # Sent, but no answer: the gateway may have committed it before it died.
                    self.report.in_doubt += 1
                    if sent.in_doubt_at is None:
                        sent.in_doubt_at = time.time()
                await self.pause()
                continue
            sent.posts += 1
            self.report.posts += 1
            if response.status_code == 401:
                self.tokens.forget(sent.sender, token)
                continue
            if response.headers.get("content-type", "").startswith(envelope.MEDIA_TYPE):
                ack = envelope.read_signed(response.text, self.gateway_sig)
                acknowledged, code = acks.read_ack(ack)
                if acknowledged != sent.header_id:
                    sent.problem = f"acknowledgement of {acknowledged}, not {sent.header_id}"
                elif code == acks.OK and response.status_code == 200:
                    sent.code = code
                    self.acked += 1
                    self.progress.set()
                elif code == acks.TRANSIENT:
                    self.report.transient_errors += 1
                    await self.pause()
                    continue
                else:
                    sent.code = code
                    sent.problem = f"{code} (HTTP {response.status_code}): {acks.ack_issues(ack)}"
                return
            # Neither an Acknowledgement nor a 401: an OperationOutcome (or worse).
            self.report.unexpected[f"HTTP {response.status_code}"] += 1
            problem = f"HTTP {response.status_code} without an acknowledgement: {response.text}"
            if self.config.stop_on_unexpected:
                self.aborted = self.aborted or f"message {sent.index}: {problem[:600]}"
                self.progress.set()
                return
            if response.status_code < 500:
                sent.problem = problem[:600]
                return
            await self.pause()

    async def sender(self, client: httpx.AsyncClient, queue: asyncio.Queue[Sent]) -> None:
        while self.aborted is None:
            try:
                sent = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.send_one(client, sent)

    async def wait_acked(self, at_least: int, senders: asyncio.Future[Any]) -> bool:
        while self.acked < at_least:
            if senders.done() or self.aborted is not None:
                return False
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), 0.5)
        return True

    async def kill_and_restart(self, client: httpx.AsyncClient, when: str) -> None:
        self.gateway.kill()
        self.report.kills.append(f"{when} (after {self.acked} acknowledged)")
        self.config.log(f"SIGKILL {when}: {self.acked}/{self.config.messages} acknowledged")
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))
        self.gateway.start()
        await self.gateway.wait_ready(client)

    async def killer(self, client: httpx.AsyncClient, senders: asyncio.Future[Any]) -> None:
        first, last = self.config.kill_window
        n = self.config.messages
        low, high = max(1, int(n * first)), max(1, int(n * last))
        points = sorted(self.rng.randint(low, high) for _ in range(self.config.kills))
        for number, point in enumerate(points, 1):
            if not await self.wait_acked(point, senders):
                return
            await asyncio.sleep(self.rng.uniform(0.0, 0.2))
            await self.kill_and_restart(client, f"kill {number} during the burst")

    async def run(self, sent: list[Sent]) -> None:
        # Each sender task acts as one participant and sends that participant's messages.
        queues: dict[str, asyncio.Queue[Sent]] = {name: asyncio.Queue() for name in SENDERS}
        for item in sent:
            queues[item.sender].put_nowait(item)
        limits = httpx.Limits(max_connections=self.config.concurrency + 4)
        timeout = httpx.Timeout(self.config.client_timeout_seconds, connect=2)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            senders = asyncio.gather(
                *(
                    self.sender(client, queues[SENDERS[i % len(SENDERS)]])
                    for i in range(self.config.concurrency)
                )
            )
            killer = asyncio.ensure_future(self.killer(client, senders))
            # Every sender ends: each message is posted a bounded number of times.
            try:
                await senders
                await killer
            finally:
                for task in (senders, killer):
                    task.cancel()
                await asyncio.gather(senders, killer, return_exceptions=True)


# --- checking --------------------------------------------------------------------------------


def message_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    messages.c.key,
                    messages.c.sender,
                    messages.c.message_id,
                    messages.c.received_at,
                    messages.c.content_sha256,
                    messages.c.ack_code,
                    messages.c.resources,
                )
            ).all()
        )


def unacknowledged_deliveries(engine: Engine, sent: list[Sent]) -> Counter[str]:
    """Status → count of the deliveries of our messages not yet acknowledged by the receiver."""
    ours = {(s.sender, s.header_id) for s in sent}
    keys = {r.key for r in message_rows(engine) if (r.sender, r.message_id) in ours}
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.message_key, deliveries.c.status).where(
                deliveries.c.role != "reply"
            )
        ).all()
    return Counter(r.status for r in rows if r.message_key in keys and r.status != "acknowledged")


async def wait_for_deliveries(
    engine: Engine, receiver: ReceiverSystem, sent: list[Sent], stall_polls: int
) -> Counter[str]:
    """Poll until every delivery is acknowledged and every id has arrived, or until
    ``stall_polls`` polls in a row show no progress (a count, not a clock)."""
    acked = [s for s in sent if s.code == acks.OK]
    expected = {(s.receiver, s.header_id) for s in acked}
    best: tuple[int, int] | None = None
    idle = 0
    while True:
        pending = await asyncio.to_thread(unacknowledged_deliveries, engine, acked)
        arrived = expected & set(receiver.snapshot())
        if not pending and arrived == expected:
            return pending
        state = (sum(pending.values()), -len(arrived))
        if best is None or state < best:
            best, idle = state, 0
        else:
            idle += 1
            if idle >= stall_polls:
                return pending
        await asyncio.sleep(0.25)


def _naive_utc(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC).replace(tzinfo=None)


def verify(
    engine: Engine,
    sent: list[Sent],
    receiver: ReceiverSystem,
    pending: Counter[str],
    report: CrashReport,
) -> list[str]:
    """Every broken promise (an empty list: passed); fills in ``acks_lost_then_repeated``."""
    problems: list[str] = []
    for s in sent:
        if s.problem is not None:
            problems.append(f"message {s.index} ({s.header_id}): {s.problem}")
        elif s.code != acks.OK:
            problems.append(f"message {s.index} ({s.header_id}) was never acknowledged ok")
    acked = [s for s in sent if s.code == acks.OK]
    rows = message_rows(engine)
    # No (sender, MessageHeader.id) stored twice, over the whole table.
    twice = [p for p, n in Counter((r.sender, r.message_id) for r in rows).items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} (sender, message id) stored more than once: {twice[:5]}")
    by_pair = {(r.sender, r.message_id): r for r in rows if r.sender in SENDERS}
    ours = {(s.sender, s.header_id) for s in sent}
    strangers = [p for p in by_pair if p not in ours]
    if strangers:
        problems.append(f"{len(strangers)} message records nobody sent: {strangers[:5]}")
    with engine.connect() as conn:
        alive = {
            (r.type, r.id)
            for r in conn.execute(
                select(resources.c.type, resources.c.id).where(resources.c.deleted.is_(False))
            )
        }
        tokens = conn.execute(
            select(idx_token.c.type, idx_token.c.id, idx_token.c.system, idx_token.c.code).where(
                idx_token.c.param == "identifier",
                idx_token.c.type.in_(("Communication", "Patient")),
            )
        ).all()
    # Live Communications per message id, live Patients per CPR.
    comms: dict[str, set[str]] = {}
    patients: dict[str, set[str]] = {}
    for t in tokens:
        if (t.type, t.id) not in alive:
            continue
        if t.type == "Communication" and t.system == MESSAGE_SYSTEM:
            comms.setdefault(str(t.code), set()).add(t.id)
        elif t.type == "Patient" and t.system == CPR:
            patients.setdefault(str(t.code), set()).add(t.id)
    for s in acked:
        row = by_pair.get((s.sender, s.header_id))
        if row is None:
            problems.append(f"acknowledged message {s.index} ({s.header_id}) is not stored")
            continue
        if row.content_sha256 != s.digest or row.ack_code != acks.OK:
            problems.append(f"message {s.index}: the stored content or ack code differs")
        missing = [r for r in json.loads(row.resources) if tuple(r.split("/", 1)) not in alive]
        if missing:
            problems.append(f"message {s.index}: its stored resources are missing: {missing}")
        if len(comms.get(s.header_id, ())) != 1:
            problems.append(
                f"message {s.index}: {len(comms.get(s.header_id, ()))} Communications carry its id"
            )
        if len(patients.get(s.cpr, ())) != 1:
            problems.append(
                f"message {s.index}: {len(patients.get(s.cpr, ()))} Patients with CPR {s.cpr}"
            )
        if s.in_doubt_at is not None and row.received_at < _naive_utc(s.in_doubt_at):
            report.acks_lost_then_repeated += 1
    strays = set(comms) - {s.header_id for s in sent}
    if strays:
        problems.append(f"{len(strays)} Communications carry ids nobody sent")
    # Delivery: every acknowledged message reached its receiver, at least once.
    if pending:
        problems.append(f"deliveries not acknowledged (no progress any more): {dict(pending)}")
    arrived = set(receiver.snapshot())
    for s in acked:
        if (s.receiver, s.header_id) not in arrived:
            problems.append(f"message {s.index} ({s.header_id}) never reached {s.receiver}")
    wrong = arrived - {(s.receiver, s.header_id) for s in sent}
    if wrong:
        problems.append(f"{len(wrong)} deliveries nobody sent, or to the wrong receiver")
    if receiver.refused:
        problems.append(f"the receivers refused {len(receiver.refused)}: {receiver.refused[:3]}")
    return problems


# --- the whole run ---------------------------------------------------------------------------


async def _run(config: CrashConfig, report: CrashReport, rng: random.Random) -> None:
    started, cpu_started = time.monotonic(), time.process_time()
    keys_dir, var_dir = config.workdir / "keys", config.workdir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = Settings(
        environment="test",
        database_url=config.database_url,
        base_url=f"http://127.0.0.1:{port}",
        keys_dir=keys_dir,
        var_dir=var_dir,
        demo=True,
    )
    await prepare_database(settings, {})  # the dev keys: the receivers' app needs theirs
    receiver = ReceiverSystem(keys_dir, RECEIVERS)
    gateway = GatewayProcess(settings, port, config.workdir, config.workers)
    engine = create_engine(sync_url(config.database_url))
    try:
        with serve_receiver(receiver) as receiver_base:
            await prepare_database(settings, {n: receiver.url(receiver_base, n) for n in RECEIVERS})
            async with httpx.AsyncClient(timeout=10) as client:
                gateway.start()
                await gateway.wait_ready(client)
                jwks = (await client.get(f"{gateway.base_url}/.well-known/jwks.json")).json()
            gateway_sig = keys_by_kid(jwks, "sig")
            receiver.gateway_keys = gateway_sig
            gateway_enc = next(iter(keys_by_kid(jwks, "enc").values()))
            sent = await asyncio.to_thread(
                make_messages, config.messages, keys_dir, gateway_enc, rng
            )
            report.setup_seconds = time.monotonic() - started
            config.log(f"set up in {report.setup_seconds:.1f} s; sending {len(sent)} messages")

            burst_started = time.monotonic()
            tokens = Tokens(gateway.base_url, keys_dir, report)
            burst = Burst(config, report, gateway, tokens, gateway_sig, rng)
            await burst.run(sent)
            report.send_seconds = time.monotonic() - burst_started
            report.acknowledged = sum(1 for s in sent if s.code == acks.OK)
            config.log(
                f"burst done in {report.send_seconds:.1f} s: {report.acknowledged} ok, "
                f"{len(report.kills)} kills"
            )
            if burst.aborted is not None:
                report.problems = [f"stopped: {burst.aborted}"]
                return

            delivery_started = time.monotonic()
            left = await asyncio.to_thread(unacknowledged_deliveries, engine, sent)
            config.log(f"deliveries not yet acknowledged after the burst: {dict(left)}")
            if config.kill_during_delivery and left:
                async with httpx.AsyncClient(timeout=10) as client:
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                    await burst.kill_and_restart(client, "kill while deliveries catch up")
            pending = await wait_for_deliveries(engine, receiver, sent, config.delivery_stall_polls)
            report.delivery_seconds = time.monotonic() - delivery_started
            config.log(f"deliveries caught up in {report.delivery_seconds:.1f} s")
            gateway.stop()
            arrived = receiver.snapshot()
            report.received_posts, report.received_unique = len(arrived), len(set(arrived))
            report.problems = verify(engine, sent, receiver, pending, report)
    finally:
        gateway.kill()
        engine.dispose()
        report.gateway_log_tail = gateway.log_tail()
        report.gateway_errors = gateway.errors()
        report.total_seconds = time.monotonic() - started
        report.gateway_cpu_seconds = gateway.cpu_seconds
        report.client_cpu_seconds = time.process_time() - cpu_started


def run_crash_test(config: CrashConfig) -> CrashReport:
    """Run the whole crash test (see the module docstring); the gateway is always killed."""
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    database = "sqlite" if config.database_url.startswith("sqlite") else "postgresql"
    report = CrashReport(database, config.messages, config.concurrency, config.workers, seed)
    config.log(f"crash test on {database}, seed {seed}")
    asyncio.run(_run(config, report, random.Random(seed)))
    return report
