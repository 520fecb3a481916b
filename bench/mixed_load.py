"""Many concurrent clients, mixed work: latency percentiles of a gateway process under load.

    .venv/bin/python -m bench.mixed_load                      # 32 clients, SQLite in a temp dir
    .venv/bin/python -m bench.mixed_load --clients 4 --requests 80 --patients 40   # tiny mode

Loads ``--patients`` Patients with ``--observations`` Observations each (as
``bench.store_and_api`` does), starts the gateway in its own process (consent enforced,
durable audit: the defaults), and runs ``--requests`` requests from ``--clients`` concurrent
clients (one keep-alive connection each), as the hospital that wrote the records: 50 %
``GET Patient/<id>``, 30 % ``GET Observation?subject=…``, 20 % ``POST Observation`` (a new
record for a loaded patient). Every answer's status is checked. Reports requests/second and
p50 / p99 / max latency per kind and overall; ``--json FILE`` writes them.

Not measured here: document ingest and messages (``bench.messaging`` has those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.store_and_api import (
    CPR_SYSTEM,
    PARTICIPANT,
    LoadedPatient,
    _load_side,
    _observation,
    gateway_process,
)
from consent import stamp_author
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.settings import Settings

SCOPE = "system/*.read system/*.write"
KINDS = ("read", "search", "write")
err_console = Console(stderr=True)
console = Console(width=None if sys.stdout.isatty() else 120)


def _percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def access_token(settings: Settings) -> str:
    key = read_private_key(private_key_path(settings.keys_dir, PARTICIPANT))
    response = httpx.post(
        settings.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": make_client_assertion(key, PARTICIPANT, settings.token_url),
            "scope": SCOPE,
        },
        timeout=30,
    )
    if response.status_code != 200:
        raise SystemExit(f"/auth/token answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token


async def run_clients(
    fhir_base: str, token: str, patients: list[LoadedPatient], args: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, int], float]:
    rng = random.Random(args.seed)
    plan = [
        (rng.choices(KINDS, weights=(50, 30, 20))[0], rng.choice(patients))
        for _ in range(args.requests)
    ]
    latencies: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    queue: asyncio.Queue[tuple[str, LoadedPatient]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=fhir_base + "/", headers=headers, timeout=120) as c:
            while True:
                try:
                    kind, patient = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                if kind == "read":
                    response = await c.get(f"Patient/{patient.id}")
                    ok = response.status_code == 200
                elif kind == "search":
                    response = await c.get(
                        "Observation", params={"subject": f"Patient/{patient.id}"}
                    )
                    ok = response.status_code == 200
                else:
                    resource = _observation(rng, f"Patient/{patient.id}", rng.randrange(300))
                    response = await c.post(
                        "Observation",
                        json=stamp_author(resource, PARTICIPANT),
                        headers={"Content-Type": "application/fhir+json"},
                    )
                    ok = response.status_code == 201
                latencies[kind].append(time.perf_counter() - started)
                if not ok:
                    key = f"{kind} {response.status_code}"
                    errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    return latencies, errors, time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="brobygger-mixed-") as tmp:
        work = Path(tmp)
        database_url = args.database_url or f"sqlite+aiosqlite:///{work}/bench.db"
        loaded = asyncio.run(_load_side(args, database_url))
        with gateway_process(database_url, work, enforce_consent=True) as settings:
            token = access_token(settings)
            latencies, errors, seconds = asyncio.run(
                run_clients(settings.fhir_base, token, loaded.patients, args)
            )
    everything = [x for samples in latencies.values() for x in samples]
    return {
        "database": database_url.split("://")[0],
        "patients": args.patients,
        "clients": args.clients,
        "requests": args.requests,
        "seconds": round(seconds, 3),
        "requests_per_second": round(args.requests / seconds, 1),
        "errors": errors,
        "latency_ms": {
            kind: {
                "count": len(samples),
                "p50": _percentile(samples, 0.5),
                "p99": _percentile(samples, 0.99),
                "max": round(max(samples, default=0.0) * 1000, 2),
            }
            for kind, samples in {**latencies, "all": everything}.items()
        },
        "consent": "enforced",
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def show(report: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"{report['database']}: {report['clients']} clients, {report['requests']} requests, "
            f"{report['requests_per_second']} req/s, errors {report['errors'] or 0}"
        )
    )
    for name in ("kind", "count", "p50 ms", "p99 ms", "max ms"):
        table.add_column(name, justify="left" if name == "kind" else "right")
    for kind, row in report["latency_ms"].items():
        table.add_row(kind, str(row["count"]), f"{row['p50']}", f"{row['p99']}", f"{row['max']}")
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mixed_load", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--analyze", action="store_true", help="ANALYZE after the load")
    parser.add_argument("--database-url", help="an EMPTY database (default: SQLite, temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        err_console.print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()


__all__ = ["CPR_SYSTEM", "main"]
