"""Store vs. HTTP: how fast the store answers lookups in-process, and what the API adds.

Loads N Patients with M Observations each through the store (transaction Bundles), then runs
a fixed number of lookups (read by id, ``Observation?subject=``, ``Patient?identifier=``)
first against ``Store`` directly, then over loopback HTTP against a gateway started in a
separate process (``python -m uvicorn``, one worker) with a real SMART access token: once with
consent enforcement (the production path: decisions and AuditEvents) and once without.

    .venv/bin/python -m bench.store_and_api [--patients N] [--database-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench import raw_baseline
from bench._gateway import free_port, running_gateway
from consent import stamp_author
from gateway.auth.assertions import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import private_key_path, read_private_key
from gateway.data import DataPath
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import resources

CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
PARTICIPANT = "auh-ortopaedi"
SCOPE = "system/*.read"
FAMILIES = ("Hansen", "Jensen", "Nielsen", "Pedersen", "Andersen", "Christensen", "Larsen")
GIVEN = ("Ole", "Mette", "Lars", "Anne", "Søren", "Hanne", "Jens", "Kirsten")

err_console = Console(stderr=True)
# A log file gets a table wide enough for the lookup names.
console = Console(width=None if sys.stdout.isatty() else 120)


# --- data --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedPatient:
    id: str
    cpr: str


def _patient(rng: random.Random, number: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CPR_SYSTEM, "value": f"{number:010d}"}],
        "name": [{"family": rng.choice(FAMILIES), "given": [rng.choice(GIVEN)]}],
        "gender": rng.choice(("female", "male")),
        "birthDate": f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }


def _observation(rng: random.Random, subject: str, day: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]
        },
        "subject": {"reference": subject},
        "effectiveDateTime": f"2024-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T08:00:00Z",
        "valueQuantity": {
            "value": round(rng.uniform(50, 120), 1),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def transaction_bundle(
    rng: random.Random, first: int, patients: int, observations: int
) -> dict[str, Any]:
    """Patients ``first..first+patients-1``, each with ``observations`` Observations.

    Every resource carries ``meta.source`` naming the reading hospital as its author, as the
    gateway stamps it on API writes: consent enforcement then lets the author read its records.
    """
    entries: list[dict[str, Any]] = []
    for number in range(first, first + patients):
        full_url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": stamp_author(_patient(rng, number), PARTICIPANT),
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        entries += [
            {
                "resource": stamp_author(_observation(rng, full_url, day), PARTICIPANT),
                "request": {"method": "POST", "url": "Observation"},
            }
            for day in range(observations)
        ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass(slots=True)
class Loaded:
    patients: list[LoadedPatient]
    seconds: float
    transactions: int
    # (type, id) of everything the first transaction Bundle created (the raw baseline's rows).
    first_batch: set[tuple[str, str]]


async def load(store: Store, *, patients: int, observations: int, batch: int, seed: int) -> Loaded:
    """Write everything through the operator's data path; return the patients and the seconds."""
    rng = random.Random(seed)
    loaded: list[LoadedPatient] = []
    first_batch: set[tuple[str, str]] = set()
    transactions = 0
    started = time.perf_counter()
    columns = (*Progress.get_default_columns(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as progress:
        task = progress.add_task("loading patients", total=patients)
        for first in range(0, patients, batch):
            size = min(batch, patients - first)
            bundle = transaction_bundle(rng, first, size, observations)
            response = await DataPath.for_operator(store).bundle(bundle)
            transactions += 1
            if not first_batch:
                first_batch = {
                    (r["resource"]["resourceType"], r["resource"]["id"]) for r in response["entry"]
                }
            for request, reply in zip(bundle["entry"], response["entry"], strict=True):
                if request["request"]["url"] == "Patient":
                    cpr = request["resource"]["identifier"][0]["value"]
                    loaded.append(LoadedPatient(reply["resource"]["id"], cpr))
            progress.advance(task, size)
            done = first + size
            if not err_console.is_terminal and done * 10 // patients > first * 10 // patients:
                # No live bar in a log file: a line every tenth instead.
                elapsed = time.perf_counter() - started
                err_console.print(f"loaded {done}/{patients} patients in {elapsed:.0f} s")
    return Loaded(loaded, time.perf_counter() - started, transactions, first_batch)


# --- measuring ---------------------------------------------------------------------------


@dataclass(slots=True)
class Rate:
    requests: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


async def measure(
    requests: int, workers: list[Callable[[int], Awaitable[None]]], label: str
) -> Rate:
    """Run exactly ``requests`` calls spread over the workers (one concurrent loop each)."""
    counter = itertools.count()
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    quiet = not err_console.is_terminal  # a transient bar leaves only blank lines in a log
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task(label, total=requests)

        async def loop(call: Callable[[int], Awaitable[None]]) -> None:
            while (i := next(counter)) < requests:
                await call(i)
                progress.advance(task)

        started = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in workers))
    return Rate(requests, time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class Lookup:
    name: str
    rtype: str
    # i -> (path below the FHIR base or query items) for request number i
    target: Callable[[int], tuple[str, list[tuple[str, str]]]]
    expected_total: int | None  # None: a read


def lookups(patients: list[LoadedPatient], observations: int, seed: int) -> list[Lookup]:
    order = list(range(len(patients)))
    random.Random(seed + 1).shuffle(order)

    def pick(i: int) -> LoadedPatient:
        return patients[order[i % len(order)]]

    return [
        Lookup(
            "read Patient/<id>",
            "Patient",
            lambda i: (f"Patient/{pick(i).id}", []),
            None,
        ),
        Lookup(
            "Observation?subject=Patient/<id>",
            "Observation",
            lambda i: ("Observation", [("subject", f"Patient/{pick(i).id}")]),
            observations,
        ),
        Lookup(
            "Patient?identifier=<cpr system>|<cpr>",
            "Patient",
            lambda i: ("Patient", [("identifier", f"{CPR_SYSTEM}|{pick(i).cpr}")]),
            1,
        ),
    ]


def _check(lookup: Lookup, i: int, body: dict[str, Any]) -> None:
    if lookup.expected_total is None:
        path, _ = lookup.target(i)
        ok = f"{body.get('resourceType')}/{body.get('id')}" == path
    else:
        ok = body.get("total") == lookup.expected_total and (
            len(body.get("entry", [])) == lookup.expected_total
        )
    if not ok:
        raise SystemExit(f"wrong answer for {lookup.name} (request {i})")


async def store_rate(store: Store, lookup: Lookup, requests: int, concurrency: int) -> Rate:
    async def call(i: int) -> None:
        path, items = lookup.target(i)
        if lookup.expected_total is None:
            rtype, _, rid = path.partition("/")
            resource = await store.read(rtype, rid)
            if i % 20 == 0:
                _check(lookup, i, resource)
        else:
            result = await store.search(store.parse(path, items))
            if i % 20 == 0:
                body = {"total": result.total, "entry": result.matches}
                _check(lookup, i, body)

    return await measure(requests, [call] * concurrency, f"store  {lookup.name}")


async def http_rate(
    fhir_base: str, token: str, lookup: Lookup, requests: int, concurrency: int
) -> Rate:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    clients = [
        httpx.AsyncClient(base_url=fhir_base + "/", headers=headers, timeout=60)
        for _ in range(concurrency)
    ]

    def caller(client: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
        async def call(i: int) -> None:
            path, items = lookup.target(i)
            response = await client.get(path, params=items)
            if response.status_code != 200:
                raise SystemExit(f"{lookup.name}: HTTP {response.status_code}: {response.text}")
            if i % 20 == 0:
                _check(lookup, i, response.json())

        return call

    try:
        return await measure(requests, [caller(c) for c in clients], f"http   {lookup.name}")
    finally:
        for client in clients:
            await client.aclose()


# --- the gateway in its own process ----------------------------------------------------------


@contextmanager
def gateway_process(database_url: str, work: Path, *, enforce_consent: bool) -> Iterator[Settings]:
    """``python -m uvicorn gateway.app:create_app --factory`` with demo participants."""
    port = free_port()
    settings = Settings(
        environment="development",
        database_url=database_url,
        base_url=f"http://127.0.0.1:{port}",
        var_dir=work / "var",
        keys_dir=work / "keys",
        demo=True,
        enforce_consent=enforce_consent,
    )
    with running_gateway(
        settings, {"BROBYGGER_ENFORCE_CONSENT": str(enforce_consent).lower()}
    ) as live:
        yield live


def access_token(settings: Settings) -> str:
    """A real token: a signed client assertion of a demo participant, swapped at /auth/token."""
    key = read_private_key(private_key_path(settings.keys_dir, PARTICIPANT))
    assertion = make_client_assertion(key, PARTICIPANT, settings.token_url)
    response = httpx.post(
        settings.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": SCOPE,
        },
        timeout=30,
    )
    if response.status_code != 200:
        raise SystemExit(f"/auth/token answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token


# --- the run -----------------------------------------------------------------------------


CONSENT_MODES = {"enforced": True, "off": False}


def _describe(url: str) -> str:
    parsed = make_url(url)
    return parsed.render_as_string(hide_password=True)


async def _load_side(args: argparse.Namespace, database_url: str) -> Loaded:
    database = Database(database_url)
    try:
        await database.migrate()
        async with database.engine.connect() as conn:
            existing = (await conn.execute(select(func.count()).select_from(resources))).scalar()
        if existing:
            raise SystemExit(
                f"the store at {_describe(database_url)} already holds {existing} resources; "
                "the bench needs an empty database"
            )
        store = Store(database, fhir_base="http://bench.invalid/fhir")
        loaded = await load(
            store,
            patients=args.patients,
            observations=args.observations,
            batch=args.batch,
            seed=args.seed,
        )
        if args.analyze:
            # What autovacuum (PostgreSQL) would eventually do.
            async with database.engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE")
        return loaded
    finally:
        await database.dispose()


async def _store_side(
    args: argparse.Namespace, database_url: str, patients: list[LoadedPatient]
) -> dict[str, Rate]:
    # A fresh engine that starts as the app's lifespan does: connections opened before the
    # load (and its statistics) would plan differently from a gateway process.
    database = Database(database_url)
    try:
        store = Store(database, fhir_base="http://bench.invalid/fhir")
        await store.refresh_statistics()
        return {
            lookup.name: await store_rate(store, lookup, args.requests, args.concurrency)
            for lookup in lookups(patients, args.observations, args.seed)
        }
    finally:
        await database.dispose()


async def _run_http_side(
    args: argparse.Namespace, settings: Settings, patients: list[LoadedPatient]
) -> dict[str, Rate]:
    token = await asyncio.to_thread(access_token, settings)
    return {
        lookup.name: await http_rate(
            settings.fhir_base, token, lookup, args.requests, args.concurrency
        )
        for lookup in lookups(patients, args.observations, args.seed)
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="brobygger-bench-") as tmp:
        work = Path(tmp)
        database_url = args.database_url or f"sqlite+aiosqlite:///{work}/bench.db"
        dialect = make_url(database_url).get_backend_name()
        err_console.print(
            f"[bold]bench[/] {args.patients} patients x {args.observations} observations "
            f"on {_describe(database_url)}"
        )
        loaded = asyncio.run(_load_side(args, database_url))
        patients, load_seconds = loaded.patients, loaded.seconds
        store_rates = asyncio.run(_store_side(args, database_url, patients))
        http_rates: dict[str, dict[str, Rate]] = {}
        for mode in args.consent_modes:
            err_console.print(f"HTTP with consent {mode}")
            enforce = CONSENT_MODES[mode]
            with gateway_process(database_url, work, enforce_consent=enforce) as settings:
                http_rates[mode] = asyncio.run(_run_http_side(args, settings, patients))
        # Last (its copies would be found by the lookups): the first load transaction's rows,
        # written again under fresh ids straight through the driver, executemany per table.
        rowset = asyncio.run(raw_baseline.capture(database_url, loaded.first_batch))
        raw_transactions = max(1, min(loaded.transactions, 20))
        raw_seconds = raw_baseline.measure_sync(database_url, rowset, raw_transactions)
    store_tx_rate = loaded.transactions / load_seconds
    raw_tx_rate = raw_transactions / raw_seconds
    resources_loaded = args.patients * (1 + args.observations)
    rows = [
        {
            "lookup": name,
            "store_requests_per_second": round(store.per_second, 1),
            "http": [
                {
                    "consent": mode,
                    "requests_per_second": round(rates[name].per_second, 1),
                    "ratio_http_to_store": round(rates[name].per_second / store.per_second, 3),
                }
                for mode, rates in http_rates.items()
            ],
        }
        for name, store in store_rates.items()
    ]
    return {
        "database": dialect,
        "database_url": _describe(database_url),
        "patients": args.patients,
        "observations_per_patient": args.observations,
        "resources": resources_loaded,
        "load": {
            "seconds": round(load_seconds, 2),
            "resources_per_second": round(resources_loaded / load_seconds, 1),
            "patients_per_transaction": args.batch,
            "transactions_per_second": round(store_tx_rate, 3),
        },
        # The first load transaction's rows written straight through the same driver
        # (executemany per table, one transaction per copy), in the same run.
        "raw_store_tx_per_second": round(raw_tx_rate, 3),
        "raw_rows_per_transaction": rowset.total_rows,
        "ratio_store_to_raw": round(store_tx_rate / raw_tx_rate, 3),
        "analyzed_after_load": args.analyze,
        "requests_per_measurement": args.requests,
        "concurrency": args.concurrency,
        "http_server": "python -m uvicorn gateway.app:create_app --factory (separate process, "
        "1 worker), loopback, one httpx.AsyncClient per concurrent caller",
        "results": rows,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }


def show(report: dict[str, Any]) -> None:
    load_info = report["load"]
    table = Table(
        title=(
            f"{report['database']}: {report['resources']} resources loaded in "
            f"{load_info['seconds']} s ({load_info['resources_per_second']}/s); "
            f"{'ANALYZEd; ' if report['analyzed_after_load'] else ''}"
            f"{report['requests_per_measurement']} requests each, "
            f"{report['concurrency']} concurrent"
        )
    )
    table.add_column("lookup", no_wrap=True)
    table.add_column("store req/s", justify="right")
    for http in report["results"][0]["http"]:
        table.add_column(f"HTTP req/s (consent {http['consent']})", justify="right")
        table.add_column("HTTP / store", justify="right")
    for row in report["results"]:
        cells = [row["lookup"], f"{row['store_requests_per_second']:.0f}"]
        for http in row["http"]:
            cells += [f"{http['requests_per_second']:.0f}", f"{http['ratio_http_to_store']:.2f}"]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"load: {load_info['transactions_per_second']:.2f} store transactions/s "
        f"({load_info['patients_per_transaction']} patients each); the same rows straight "
        f"through the driver: {report['raw_store_tx_per_second']:.2f} tx/s "
        f"({report['raw_rows_per_transaction']} rows); store / raw "
        f"{report['ratio_store_to_raw']:.3f}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_and_api", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--patients", type=int, default=10_000, help="patients to load")
    parser.add_argument("--observations", type=int, default=10, help="Observations per patient")
    parser.add_argument(
        "--database-url",
        help="an EMPTY database (default: SQLite in a temporary directory, removed afterwards)",
    )
    parser.add_argument("--batch", type=int, default=50, help="patients per transaction Bundle")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent callers")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the data")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE after loading (planner statistics) before measuring",
    )
    parser.add_argument(
        "--consent",
        choices=("both", *CONSENT_MODES),
        default="both",
        help="measure HTTP with consent enforcement, without, or both (default)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    args.consent_modes = list(CONSENT_MODES) if args.consent == "both" else [args.consent]
    for name in ("patients", "observations", "batch", "requests", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
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
