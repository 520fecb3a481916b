"""The messaging crash test in long mode: more messages, more SIGKILLs, a printed summary.

    .venv/bin/python -m bench.messaging_crash                          # both stores, 5 000 msgs
    .venv/bin/python -m bench.messaging_crash --store sqlite --messages 2000 --kills 6
    .venv/bin/python -m bench.messaging_crash --seed 1234 --json out.json

The same run as ``tests/messaging/test_crash.py`` (``tests/messaging/crash_support.py``): a
real ``brobygger serve --demo`` process on loopback, killed with SIGKILL at random moments of
the burst and once more while deliveries catch up, restarted each time; senders retry the same
sealed message until it is acknowledged ``ok``; then the database and the receivers' system are
checked. PostgreSQL runs in a new database on the server of ``--pg-admin-url`` (dropped
afterwards). Nothing here asserts a time; the exit status is 1 when a promise was broken or the
gateway gave an answer that was not an acknowledgement (e.g. a 500, retried by the senders).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.messaging.crash_support import (
    CrashConfig,
    CrashReport,
    fresh_postgres_database,
    run_crash_test,
)

console = Console()
PG_ADMIN_URL = os.environ.get("BROBYGGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def run_store(args: argparse.Namespace, kind: str) -> CrashReport:
    with tempfile.TemporaryDirectory(prefix="brobygger-crash-") as tmp:
        workdir = Path(tmp)
        database: contextlib.AbstractContextManager[str] = (
            contextlib.nullcontext(f"sqlite+aiosqlite:///{workdir}/store.db")
            if kind == "sqlite"
            else fresh_postgres_database(args.pg_admin_url)
        )
        with database as url:
            report = run_crash_test(
                CrashConfig(
                    database_url=url,
                    workdir=workdir,
                    messages=args.messages,
                    concurrency=args.concurrency,
                    kills=args.kills,
                    seed=args.seed,
                    workers=args.pg_workers if kind == "postgresql" else 1,
                    kill_during_delivery=not args.no_delivery_kill,
                    stop_on_unexpected=False,  # long mode: count them and carry on
                    log=lambda line: console.print(
                        f"[dim]{time.strftime('%H:%M:%S')}[/dim] {kind}: {line}", highlight=False
                    ),
                )
            )
        return report


def table(reports: list[CrashReport]) -> Table:
    out = Table(title="Messaging crash test (long mode)")
    out.add_column("")
    for report in reports:
        out.add_column(report.database, justify="right")
    rows: list[tuple[str, Any]] = [
        ("messages acknowledged ok", lambda r: f"{r.acknowledged} / {r.messages}"),
        ("sender tasks / gateway processes", lambda r: f"{r.concurrency} / {r.workers}"),
        ("SIGKILLs", lambda r: len(r.kills)),
        ("posts answered", lambda r: r.posts),
        ("connection errors (retried)", lambda r: r.connection_errors),
        ("… of them in doubt (sent, no answer)", lambda r: r.in_doubt),
        ("acks lost, repeat answered from record", lambda r: r.acks_lost_then_repeated),
        ("transient-error answers (retried)", lambda r: r.transient_errors),
        ("answers that were not acks", lambda r: dict(r.unexpected) or 0),
        ("deliveries received / unique ids", lambda r: f"{r.received_posts} / {r.received_unique}"),
        ("set-up s", lambda r: f"{r.setup_seconds:.1f}"),
        ("burst s", lambda r: f"{r.send_seconds:.1f}"),
        ("delivery catch-up s", lambda r: f"{r.delivery_seconds:.1f}"),
        ("total s", lambda r: f"{r.total_seconds:.1f}"),
        ("messages/s through the burst", lambda r: f"{r.acknowledged / r.send_seconds:.1f}"),
        ("gateway CPU s / client CPU s", lambda r: _cpu(r)),
        ("gateway ERROR log lines", lambda r: sum(r.gateway_errors.values())),
        ("broken promises", lambda r: len(r.problems)),
        ("seed", lambda r: r.seed),
    ]
    for label, value in rows:
        out.add_row(label, *(str(value(r)) for r in reports))
    return out


def _cpu(report: CrashReport) -> str:
    return f"{report.gateway_cpu_seconds:.1f} / {report.client_cpu_seconds:.1f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.messaging_crash",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs during the burst")
    parser.add_argument("--concurrency", type=int, default=32, help="sender tasks")
    parser.add_argument("--pg-workers", type=int, default=2, help="gateway processes (PG)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-delivery-kill", action="store_true")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    reports = [run_store(args, kind) for kind in kinds]
    console.print(table(reports))
    for report in reports:
        for error, count in report.gateway_errors.most_common(10):
            console.print(f"{report.database}: gateway log: {count} x {error}", highlight=False)
        for problem in report.problems[:20]:
            console.print(f"[red]{report.database}:[/red] {problem}", highlight=False)
    if args.json is not None:
        args.json.write_text(
            json.dumps([r.summary() for r in reports], indent=2, ensure_ascii=False),
            encoding="utf-8",
        )
    # A broken promise, or an answer that was neither an acknowledgement nor a 401.
    sys.exit(1 if any(r.problems or r.unexpected for r in reports) else 0)


if __name__ == "__main__":
    main()
