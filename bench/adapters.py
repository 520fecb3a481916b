"""Adapters: documents per second for map + validate, and map + validate + store.

For each format the sample documents are turned into N distinct documents (the business
identifier — Letter/Identifier, BlanketId, SagId — gets a per-run suffix, so every store is a
new document, not an "unchanged" re-ingest). Each figure is also given as a ratio to parsing
the same bytes with lxml alone, measured in the same run.

    .venv/bin/python -m bench.adapters [--documents N] [--database-url URL] [--json out.json]

Stores: a SQLite file in a temp dir always; PostgreSQL when ``--database-url`` is given (the
documents are written there and not removed: use a throw-away database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from rich.console import Console
from rich.table import Table

from gateway.ingest.pipeline import ingest, validate_bundle
from gateway.store.database import Database
from gateway.store.repository import Store
from mappings import FORMATS, map_document

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "samples"
# The element holding each format's business identifier (made unique per document).
ID_ELEMENT = {"rehab-plan": "Identifier", "gp-statement": "BlanketId", "jobcentre-case": "SagId"}
ID_PARENT = {"rehab-plan": "Letter", "gp-statement": "Meta", "jobcentre-case": None}

console = Console(width=None if sys.stdout.isatty() else 120)


def variants(fmt: str, count: int, run: str, samples: Path) -> list[bytes]:
    """``count`` distinct documents of ``fmt``, cycling over its samples."""
    sources = sorted((samples / fmt).glob("*.xml"))
    out: list[bytes] = []
    for i in range(count):
        root = etree.fromstring(sources[i % len(sources)].read_bytes())
        for element in root.iter():
            if not isinstance(element.tag, str):
                continue
            name = etree.QName(element).localname
            parent = element.getparent()
            parent_name = etree.QName(parent).localname if parent is not None else None
            wanted_parent = ID_PARENT[fmt]
            if name == ID_ELEMENT[fmt] and (wanted_parent is None or parent_name == wanted_parent):
                element.text = f"{element.text}-B{run}{i}"
        out.append(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return out


def timed(work: Callable[[], None], documents: int) -> float:
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    return documents / elapsed if elapsed > 0 else float("inf")


def parse_only(documents: list[bytes]) -> None:
    for doc in documents:
        etree.fromstring(doc)


def map_and_validate(documents: list[bytes], now: datetime) -> None:
    for doc in documents:
        validate_bundle(map_document(doc, now=now).bundle)


def validate_only(bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        validate_bundle(bundle)


async def store_all(url: str, documents: list[bytes], now: datetime) -> float:
    database = Database(url)
    try:
        await database.migrate()
        store = Store(database)
        start = time.perf_counter()
        for doc in documents:
            result = await ingest(store, doc, sender_participant=None, now=now)
            if result.status != "accepted":
                raise RuntimeError(f"expected a new document, got {result.status}")
        elapsed = time.perf_counter() - start
    finally:
        await database.dispose()
    return len(documents) / elapsed if elapsed > 0 else float("inf")


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    run_id = uuid.uuid4().hex[:6]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="brobygger-bench-") as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        for fmt in FORMATS:
            documents = variants(fmt, args.documents, run_id, args.samples)
            parse_only(documents)  # warm-up: imports, caches
            map_and_validate(documents[:1], now)
            lxml_rate = timed(lambda: parse_only(documents), len(documents))  # noqa: B023
            bundles = [map_document(doc, now=now).bundle for doc in documents]
            rates = {
                # The budget: validating one mapped Bundle stays under 10 ms.
                "validate (base R4 + profiles)": timed(
                    lambda: validate_only(bundles),  # noqa: B023
                    len(bundles),
                ),
                "map + validate": timed(
                    lambda: map_and_validate(documents, now),  # noqa: B023
                    len(documents),
                ),
            }
            rates["map + validate + store (SQLite)"] = asyncio.run(
                store_all(sqlite_url, documents, now)
            )
            if args.database_url:
                pg_docs = variants(fmt, args.documents, run_id + "pg", args.samples)
                rates["map + validate + store (PostgreSQL)"] = asyncio.run(
                    store_all(args.database_url, pg_docs, now)
                )
            for step, rate in rates.items():
                results.append(
                    {
                        "format": fmt,
                        "step": step,
                        "documents": len(documents),
                        "documents_per_second": rate,
                        "lxml_parse_documents_per_second": lxml_rate,
                        "ratio_to_lxml_parse": rate / lxml_rate,
                    }
                )
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "documents_per_format": args.documents,
        "postgresql": bool(args.database_url),
        "results": results,
    }


def print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"adapters: {report['documents_per_format']} documents per format")
    for name, justify in (
        ("format", "left"),
        ("step", "left"),
        ("docs/s", "right"),
        ("ms/doc", "right"),
        ("lxml parse docs/s", "right"),
        ("ratio to lxml", "right"),
        ("lxml is N times faster", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report["results"]:
        ratio = row["ratio_to_lxml_parse"]
        table.add_row(
            row["format"],
            row["step"],
            f"{row['documents_per_second']:,.0f}",
            f"{1000 / row['documents_per_second']:.2f}",
            f"{row['lxml_parse_documents_per_second']:,.0f}",
            f"{ratio:.4f}",
            f"{1 / ratio:,.0f}" if ratio > 0 else "-",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--documents", type=int, default=200, help="documents per format")
    parser.add_argument("--database-url", help="also store on this (PostgreSQL) database")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.documents < 1 or args.documents > 100_000:
        parser.error("--documents takes 1-100000")
    report = run(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
