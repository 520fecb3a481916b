"""Soak: many mixed requests from many clients against one gateway; does its memory stay flat?

A real gateway (``python -m uvicorn``, one worker, SQLite, demo participants) on a loopback
port takes ``--requests`` requests from ``--clients`` concurrent clients, each with its own
keep-alive connection: reads, searches (with ``_include``), creates, transactions, ingested
job-centre cases, FHIR messages (``$process-message``, signed and encrypted) and hostile
input (unknown types, deep JSON, too many OR values, unknown paths). Meanwhile one more
client polls ``/healthz``. Reported: the gateway's RSS at start, after the warm-up, at its
peak and at the end (and its worker processes' RSS), ``/healthz`` p50/p99, and the answers
by kind and status. No answer may be a 5xx.

    .venv/bin/python -m bench.soak                      # 20,000 requests, 32 clients
    .venv/bin/python -m bench.soak --requests 300 --clients 8 --json out.json   # short
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench._gateway import free_port, gateway_process
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.messaging import envelope
from gateway.messaging.keys import keys_by_kid
from gateway.messaging.message import REHAB_PLAN, binary_resource, build_message
from gateway.participants.demo import DEMO_PARTICIPANTS
from gateway.participants.directory import Participant
from gateway.settings import Settings

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "samples"
CASE = SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml"
PLAN = SAMPLES / "rehab-plan" / "ggop-shoulder-electrician.xml"
HOSPITAL = "auh-ortopaedi"  # writes, reads, sends the rehab plan
REHAB_UNIT = "aarhus-genoptraening"  # the plan's receiver
JOBCENTRE = "jobcenter-aarhus"  # the case's sender
SCOPE = "system/*.read system/*.write"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
# Weights of the request kinds in the mix.
MIX: dict[str, int] = {
    "read": 24,
    "search": 20,
    "search-include": 6,
    "create": 12,
    "transaction": 6,
    "ingest": 5,
    "ingest-again": 3,
    "message": 4,
    "hostile": 10,
    "unknown-path": 5,
    "history": 5,
}


def rss_kib(pid: int) -> int:
    """Resident set size of one process (KiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                stack.append(int(child))
    return found


def workers_rss_kib(pid: int) -> int:
    total = 0
    for child in descendants(pid):
        try:
            total += rss_kib(child)
        except OSError:
            continue
    return total


def _demo(name: str) -> Participant:
    return next(p for p in DEMO_PARTICIPANTS if p.name == name)


async def access_token(client: httpx.AsyncClient, settings: Settings, name: str) -> str:
    key = read_private_key(private_key_path(settings.keys_dir, name))
    response = await client.post(
        settings.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": make_client_assertion(key, name, settings.token_url),
            "scope": SCOPE,
        },
    )
    if response.status_code != 200:
        raise SystemExit(f"/auth/token answered {response.status_code}: {response.text}")
    return str(response.json()["access_token"])


def _patient(rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": f"Soak{rng.randrange(500)}", "given": [f"G{rng.randrange(10**6)}"]}],
        "birthDate": f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(9)}",
    }


def _observation(subject: str, rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2026-0{rng.randrange(1, 9)}-1{rng.randrange(9)}T08:00:00+01:00",
        "valueQuantity": {"value": rng.randrange(50, 120), "unit": "kg"},
    }


def _deep(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "a"}
    for _ in range(levels):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return {"resourceType": "Patient", "extension": [extension]}


@dataclass
class State:
    """What the clients share: ids to read, tokens, keys, and what came back."""

    settings: Settings
    gateway_enc: Any
    plan: bytes
    case: bytes
    patients: list[str] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    # Access tokens live 5 minutes; a soak lasts longer: each renewed a minute early.
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    token_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def token(self, client: httpx.AsyncClient, name: str) -> str:
        async with self.token_lock:
            token, renew_at = self.tokens.get(name, ("", 0.0))
            if time.monotonic() >= renew_at:
                token = await access_token(client, self.settings, name)
                lifetime = self.settings.access_token_lifetime_seconds
                self.tokens[name] = (token, time.monotonic() + max(10, lifetime - 60))
            return token


def _case_variant(case: bytes, n: int) -> bytes:
    return case.replace(b"SDP-2026-004711", f"SDP-SOAK-{n:07d}".encode())


def _plan_variant(plan: bytes, n: int) -> bytes:
    marker = b"</Identifier>"
    at = plan.index(marker)  # the first Identifier is the Letter's: a new plan id
    return plan[:at] + f"-soak{n}".encode() + plan[at:]


async def one_request(
    client: httpx.AsyncClient, state: State, kind: str, rng: random.Random
) -> int:
    auth = {"Authorization": f"Bearer {await state.token(client, HOSPITAL)}"}
    n = next(state.counter)
    if kind == "read" and state.patients:
        pid = rng.choice(state.patients)
        response = await client.get(f"/fhir/Patient/{pid}", headers=auth)
    elif kind == "search":
        query = rng.choice(
            [
                f"/fhir/Patient?family=soak{rng.randrange(500)}",
                f"/fhir/Patient?birthdate=ge19{rng.randrange(40, 99)}&_count=5",
                "/fhir/Observation?code=http://loinc.org|29463-7&_count=10",
                f"/fhir/Patient?name=g{rng.randrange(10**6)}&_total=none",
            ]
        )
        response = await client.get(query, headers=auth)
    elif kind == "search-include" and state.patients:
        pid = rng.choice(state.patients)
        response = await client.get(
            f"/fhir/Observation?subject=Patient/{pid}&_include=Observation:subject", headers=auth
        )
    elif kind == "create":
        response = await client.post(
            "/fhir/Patient", json=_patient(rng), headers={**auth, **FHIR_JSON}
        )
        if response.status_code == 201:
            state.patients.append(response.json()["id"])
    elif kind == "transaction":
        urn = f"urn:uuid:{uuid.uuid4()}"
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": urn,
                    "resource": _patient(rng),
                    "request": {"method": "POST", "url": "Patient"},
                },
                *(
                    {
                        "resource": _observation(urn, rng),
                        "request": {"method": "POST", "url": "Observation"},
                    }
                    for _ in range(3)
                ),
            ],
        }
        response = await client.post("/fhir", json=bundle, headers={**auth, **FHIR_JSON})
    elif kind in ("ingest", "ingest-again"):
        document = _case_variant(state.case, n if kind == "ingest" else n % 5)
        response = await client.post(
            "/ingest/jobcentre-case",
            content=document,
            headers={
                "Authorization": f"Bearer {await state.token(client, JOBCENTRE)}",
                "Content-Type": "application/xml",
            },
        )
    elif kind == "message":
        message = build_message(
            event=REHAB_PLAN,
            sender=_demo(HOSPITAL),
            receivers=[(_demo(REHAB_UNIT), "primary")],
            content=[binary_resource(_plan_variant(state.plan, n))],
        )
        key = read_private_key(private_key_path(state.settings.keys_dir, HOSPITAL))
        body = envelope.seal(message, key, state.gateway_enc)
        response = await client.post(
            "/fhir/$process-message",
            content=body.encode("ascii"),
            headers={
                **auth,
                "Content-Type": envelope.MEDIA_TYPE,
                "Accept": "application/fhir+json",
            },
        )
    elif kind == "hostile":
        choice = n % 5
        if choice == 0:
            response = await client.post(
                f"/fhir/Patient{n % 7}",
                json={"resourceType": f"AAA{n}"},
                headers={**auth, **FHIR_JSON},
            )
        elif choice == 1:
            response = await client.post(
                "/fhir/Patient", json=_deep(80), headers={**auth, **FHIR_JSON}
            )
        elif choice == 2:
            values = ",".join(f"x{n}-{i}" for i in range(150))
            response = await client.get(f"/fhir/Patient?family={values}", headers=auth)
        elif choice == 3:
            response = await client.get(
                f"/fhir/Patient?_lastUpdated=2026-01-01T00:00:00%2B{15 + n % 80}:00", headers=auth
            )
        else:
            response = await client.post(
                "/fhir/$validate", json={"resourceType": f"Q{n}"}, headers={**auth, **FHIR_JSON}
            )
    elif kind == "unknown-path":
        response = await client.get(f"/fhir/Patient/{uuid.uuid4()}/x/{n}", headers=auth)
    else:  # history (and read/search-include before any patient exists)
        response = await client.get("/fhir/Patient/_history?_count=5", headers=auth)
    state.statuses[(kind, response.status_code)] += 1
    if response.status_code == 401:  # the soak's own tokens must stay valid all along
        state.server_errors.append(f"{kind} 401 (the bench's token expired?)")
    if response.status_code >= 500:
        state.server_errors.append(f"{kind} {response.status_code} {response.text[:200]}")
    return response.status_code


async def run_clients(state: State, count: int, clients: int, seed: int) -> float:
    kinds = [k for k, weight in MIX.items() for _ in range(weight)]
    remaining = itertools.count()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        async with httpx.AsyncClient(
            base_url=state.settings.base_url, timeout=120, limits=limits
        ) as client:
            while next(remaining) < count:
                await one_request(client, state, rng.choice(kinds), rng)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return time.perf_counter() - started


async def poll_healthz(base_url: str, stop: asyncio.Event, samples: list[float]) -> int:
    """One more client on its own connection: /healthz every 50 ms; failures counted."""
    failures = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await client.get("/healthz")
                if response.status_code == 200:
                    samples.append(time.perf_counter() - started)
                else:
                    failures += 1
            except httpx.TransportError:
                failures += 1
            await asyncio.sleep(0.05)
    return failures


async def sample_rss(pid: int, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak.append(rss_kib(pid))
        await asyncio.sleep(0.5)


def _ms(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def soak(settings: Settings, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=settings.base_url, timeout=60) as client:
        jwks = (await client.get("/.well-known/jwks.json")).raise_for_status().json()
    state = State(
        settings,
        next(iter(keys_by_kid(jwks, "enc").values())),
        PLAN.read_bytes(),
        CASE.read_bytes(),
    )
    rss_start = rss_kib(pid)
    warm_up = max(args.clients * 4, args.requests // 10)
    await run_clients(state, warm_up, args.clients, args.seed)
    rss_warm = rss_kib(pid)
    workers_warm = workers_rss_kib(pid)
    stop = asyncio.Event()
    healthz: list[float] = []
    rss_samples: list[int] = [rss_warm]
    poller = asyncio.create_task(poll_healthz(settings.base_url, stop, healthz))
    sampler = asyncio.create_task(sample_rss(pid, stop, rss_samples))
    seconds = await run_clients(state, args.requests, args.clients, args.seed + 1)
    stop.set()
    failures = await poller
    await sampler
    rss_end = rss_kib(pid)
    rss_samples.append(rss_end)
    growth = (rss_end - rss_warm) / rss_warm
    statuses: dict[str, dict[str, int]] = {}
    for (kind, status), number in sorted(state.statuses.items()):
        statuses.setdefault(kind, {})[str(status)] = number
    return {
        "requests": args.requests,
        "warm_up_requests": warm_up,
        "clients": args.clients,
        "seconds": round(seconds, 1),
        "requests_per_second": round(args.requests / seconds, 1),
        "rss_mib": {
            "start": round(rss_start / 1024, 1),
            "after_warm_up": round(rss_warm / 1024, 1),
            "peak": round(max(rss_samples) / 1024, 1),
            "end": round(rss_end / 1024, 1),
            "growth_after_warm_up_percent": round(100 * growth, 1),
            # Ten samples spread over the soak: a leak climbs, a cache levels off.
            "timeline": [
                round(rss_samples[i * (len(rss_samples) - 1) // 10] / 1024, 1) for i in range(11)
            ],
        },
        "worker_processes_rss_mib": {
            "after_warm_up": round(workers_warm / 1024, 1),
            "end": round(workers_rss_kib(pid) / 1024, 1),
        },
        "healthz_ms": {
            "polls": len(healthz),
            "failures": failures,
            "p50": _ms(healthz, 0.50),
            "p99": _ms(healthz, 0.99),
            "max": _ms(healthz, 1.0),
            "mean": round(1000 * statistics.fmean(healthz), 2) if healthz else 0.0,
        },
        "statuses": statuses,
        "server_errors": state.server_errors[:20],
        "server_error_count": len(state.server_errors),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="brobygger-soak-") as tmp:
        work = Path(tmp)
        port = free_port()
        settings = Settings(
            environment="development",
            database_url=f"sqlite+aiosqlite:///{work}/soak.db",
            base_url=f"http://127.0.0.1:{port}",
            var_dir=work / "var",
            keys_dir=work / "keys",
            demo=True,
        )
        # Messages go to the rehab unit's mailbox: no delivery worker posting anywhere.
        extra = {"BROBYGGER_DELIVERY_IN_PROCESS": "false", "BROBYGGER_AUDIT_WRITE": "batched"}
        with gateway_process(settings, extra) as process:
            report = asyncio.run(soak(settings, process.pid, args))
    report["started"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["python"] = sys.version.split()[0]
    return report


def show(report: dict[str, Any]) -> None:
    rss, health = report["rss_mib"], report["healthz_ms"]
    print(
        f"{report['requests']} requests from {report['clients']} clients in "
        f"{report['seconds']} s ({report['requests_per_second']}/s), "
        f"after {report['warm_up_requests']} warm-up requests"
    )
    print(
        f"gateway RSS MiB: start {rss['start']}, after warm-up {rss['after_warm_up']}, "
        f"peak {rss['peak']}, end {rss['end']} ({rss['growth_after_warm_up_percent']:+} %)"
    )
    print(f"gateway RSS MiB over the soak: {rss['timeline']}")
    workers = report["worker_processes_rss_mib"]
    print(
        f"worker processes RSS MiB: after warm-up {workers['after_warm_up']}, end {workers['end']}"
    )
    print(
        f"/healthz during the soak: {health['polls']} polls, {health['failures']} failed, "
        f"p50 {health['p50']} ms, p99 {health['p99']} ms, max {health['max']} ms"
    )
    for kind, statuses in report["statuses"].items():
        print(f"  {kind:15} {statuses}")
    print(f"5xx (or 401) answers: {report['server_error_count']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument(
        "--max-growth-percent",
        type=float,
        default=25.0,
        help="exit 1 when RSS at the end exceeds RSS after the warm-up by more",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    failed = report["server_error_count"] > 0 or (
        report["rss_mib"]["growth_after_warm_up_percent"] > args.max_growth_percent
    )
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
