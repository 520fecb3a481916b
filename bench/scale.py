"""Patient-scoped search at scale on PostgreSQL: bulk-loaded by COPY, searched under consent.

    .venv/bin/python -m bench.scale                                   # 10k and 100k resources
    .venv/bin/python -m bench.scale --sizes 10000,100000,1000000      # the 1M step (long)
    .venv/bin/python -m bench.scale --sizes 2000 --searches 50        # tiny mode

Creates its own database on ``--postgresql-admin-url`` (dropped afterwards) and grows it in
steps to each of ``--sizes`` resources: patients with nine Observations each (ten resources
per patient), authored by ``auh-ortopaedi`` (``meta.source``, as the gateway stamps), each row
set — ``resources``, ``resource_history``, the four index tables, ``patient_identities`` —
computed by the gateway's own ``index_resource`` and written with ``COPY``. After each step
it runs ``ANALYZE`` and ``--searches`` searches ``Observation?subject=Patient/<id>`` as the
hospital through ``DataPath.search`` (consent enforced, AuditEvents committed), and reports
p50/p99 per size and the growth from the first size to the last; ``--explain`` prints the
search's ``EXPLAIN (ANALYZE, BUFFERS)`` at each size. ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from bench.messaging import scratch_database
from consent import stamp_author
from gateway.auth.principal import Principal
from gateway.data import DataPath
from gateway.search.dates import format_instant
from gateway.search.indexing import index_resource
from gateway.store.audit_writer import AuditWriter
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.store.schema import resources
from profiles import fhir_json

PARTICIPANT = "auh-ortopaedi"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
PER_PATIENT = 10
console = Console()


def _rows(number: int, now: datetime) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of patient ``number`` and its nine Observations."""
    stamp = format_instant(now)
    pid = str(uuid.UUID(int=number + 1))
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1", "lastUpdated": stamp},
        "identifier": [{"system": CPR_SYSTEM, "value": f"{number:010d}"}],
        "name": [{"family": "Hansen", "given": ["Ole"]}],
        "birthDate": "1970-01-01",
    }
    made = [stamp_author(patient, PARTICIPANT)]
    for day in range(PER_PATIENT - 1):
        made.append(
            stamp_author(
                {
                    "resourceType": "Observation",
                    "id": str(uuid.UUID(int=(number + 1) << 16 | day)),
                    "meta": {"versionId": "1", "lastUpdated": stamp},
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"2024-{1 + day:02d}-01T08:00:00Z",
                    "valueQuantity": {"value": 70 + day, "unit": "kg"},
                },
                PARTICIPANT,
            )
        )
    out: dict[str, list[tuple[Any, ...]]] = {
        "resources": [],
        "resource_history": [],
        "idx_token": [],
        "idx_string": [],
        "idx_date": [],
        "idx_reference": [],
        "patient_identities": [(CPR_SYSTEM, f"{number:010d}", pid)],
    }
    for resource in made:
        rtype, rid = resource["resourceType"], resource["id"]
        content = fhir_json.dumps(resource)
        out["resources"].append((rtype, rid, 1, now, False, content))
        out["resource_history"].append((rtype, rid, 1, now, False, "POST", content))
        rows = index_resource(resource)
        for name, values in (
            ("idx_token", rows.token),
            ("idx_string", rows.string),
            ("idx_date", rows.date),
            ("idx_reference", rows.reference),
        ):
            for v in values:
                _INDEX_COLUMNS.setdefault(name, ", ".join(["type", "id", *v]))
                out[name].append((rtype, rid, *v.values()))
    return out


_INDEX_COLUMNS: dict[str, str] = {}


_COLUMNS = {
    "resources": "type, id, version, last_updated, deleted, content",
    "resource_history": "type, id, version, last_updated, deleted, method, content",
    "patient_identities": "system, value, patient_id",
}


def copy_patients(dsn: str, first: int, count: int) -> None:
    """Patients ``first..first+count-1`` (and their Observations) by COPY, one transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for number in range(first, first + count):
        for name, rows in _rows(number, now).items():
            tables.setdefault(name, []).extend(rows)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for name, rows in tables.items():
            if not rows:
                continue
            columns = _COLUMNS.get(name) or _INDEX_COLUMNS[name]
            with cur.copy(f"COPY {name} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        conn.commit()


async def measure(
    url: str, patients: int, searches: int, seed: int, explain: bool
) -> dict[str, Any]:
    database = Database(url)
    store = Store(database, fhir_base="http://bench.invalid/fhir")
    store.audit_writer = AuditWriter(store, "sync")
    principal = Principal(
        participant=PARTICIPANT,
        kind="hospital",
        client_id=PARTICIPANT,
        scopes=frozenset({"system/*.read"}),
        purpose=None,
        organization_id=None,
    )
    rng = random.Random(seed)
    picks = [str(uuid.UUID(int=rng.randrange(patients) + 1)) for _ in range(searches)]
    samples: list[float] = []
    plan = ""
    try:
        for i, pid in enumerate(picks):
            path = DataPath(store, principal)
            started = time.perf_counter()
            page = await path.search("Observation", [("subject", f"Patient/{pid}")])
            elapsed = time.perf_counter() - started
            if page.result.total != PER_PATIENT - 1:
                raise SystemExit(f"Observation?subject={pid}: {page.result.total} matches")
            if i >= 5:  # the first few warm the pool and the caches
                samples.append(elapsed)
        if explain:
            request = store.parse("Observation", [("subject", f"Patient/{picks[0]}")])
            query = (
                select(resources.c.id, resources.c.content)
                .where(*store._matching(request))
                .order_by(*store._order(request))
                .limit(500)
            )
            sql = str(
                query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            async with database.engine.connect() as conn:
                rows = await conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                plan = "\n".join(r[0] for r in rows)
    finally:
        await store.audit_writer.close()
        await database.dispose()
    samples.sort()
    return {
        "resources": patients * PER_PATIENT,
        "searches": len(samples),
        "p50_ms": round(samples[len(samples) // 2] * 1000, 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 2),
        "plan": plan,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    steps: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database("postgresql", Path(tmp), args.postgresql_admin_url) as url,
    ):
        asyncio.run(Database(url).migrate())
        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        loaded = 0
        for size in sizes:
            target = size // PER_PATIENT
            started = time.perf_counter()
            while loaded < target:
                count = min(args.batch, target - loaded)
                copy_patients(dsn, loaded, count)
                loaded += count
            load_seconds = time.perf_counter() - started
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ANALYZE")
            step = asyncio.run(measure(url, loaded, args.searches, args.seed, args.explain))
            step["load_seconds_this_step"] = round(load_seconds, 1)
            steps.append(step)
            console.print(
                f"{step['resources']:>9} resources: p50 {step['p50_ms']} ms, p99 "
                f"{step['p99_ms']} ms (loaded this step in {step['load_seconds_this_step']} s)"
            )
            if step["plan"]:
                print(step["plan"])
    first, last = steps[0], steps[-1]
    return {
        "steps": steps,
        "growth_p99_first_to_last": round(last["p99_ms"] / first["p99_ms"], 2),
        "consent": "enforced (DataPath, auh-ortopaedi, author rule), AuditEvents committed",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def show(report: dict[str, Any]) -> None:
    table = Table(title="Observation?subject=Patient/<id> under consent (PostgreSQL, COPY-loaded)")
    for name in ("resources", "p50 ms", "p99 ms", "searches"):
        table.add_column(name, justify="right")
    for step in report["steps"]:
        table.add_row(
            f"{step['resources']:,}",
            str(step["p50_ms"]),
            str(step["p99_ms"]),
            str(step["searches"]),
        )
    console.print(table)
    console.print(f"p99 growth, first size to last: {report['growth_p99_first_to_last']}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default="10000,100000", help="resources, comma-separated")
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2000, help="patients per COPY transaction")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--postgresql-admin-url",
        default=os.environ.get(
            "BROBYGGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args)
    show(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
