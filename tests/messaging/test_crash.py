"""Crash test: 1,000 messages from concurrent senders while the gateway is SIGKILLed (both stores).

A real ``brobygger serve --demo`` process on a loopback port is killed with SIGKILL at random
moments of the burst (and once while the deliveries catch up) and started again; the senders
post the same sealed message until it is acknowledged ``ok``. Then the database and the
receivers' system are checked (``crash_support.verify``): every acknowledged message stored
exactly once with its content, nothing stored twice, every message delivered to its receiver at
least once. The long mode is ``python -m bench.messaging_crash``.

A failing run prints its seed; ``BROBYGGER_CRASH_SEED=<seed>`` replays the same kill points and
message ids (the moments still depend on the machine's timing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.messaging.crash_support import (
    CrashConfig,
    CrashReport,
    fresh_postgres_database,
    run_crash_test,
)

pytestmark = pytest.mark.slow

PG_ADMIN_URL = os.environ.get("BROBYGGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The suite's short mode; the long mode is ``python -m bench.messaging_crash`` (5,000).
MESSAGES = 500
KILLS = 3
SEED = int(os.environ["BROBYGGER_CRASH_SEED"]) if os.environ.get("BROBYGGER_CRASH_SEED") else None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, database URL): a new SQLite file, or a new PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite+aiosqlite:///{tmp_path}/store.db"
        return
    # Skips without PostgreSQL, and fails under CI=true, exactly like every other PG test.
    request.getfixturevalue("pg_database")
    with fresh_postgres_database(PG_ADMIN_URL) as url:
        yield "postgresql", url


def _explain(report: CrashReport, log: list[str]) -> str:
    return (
        "\n".join(log)
        + "\n"
        + json.dumps(report.summary(), indent=1)
        + "\n--- gateway log (tail) ---\n"
        + report.gateway_log_tail
    )


def test_a_burst_survives_sigkills_stored_once_and_delivered_at_least_once(
    store: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = store
    log: list[str] = []
    report = run_crash_test(
        CrashConfig(
            database_url=url,
            workdir=tmp_path / "run",
            messages=MESSAGES,
            concurrency=32,
            kills=KILLS,
            seed=SEED,
            # PostgreSQL: two gateway processes, so deliveries are also claimed by two workers.
            workers=2 if kind == "postgresql" else 1,
            # A 500 is retried here (and counted in the summary); that the gateway never
            # answers one is the next test's promise.
            stop_on_unexpected=False,
            log=log.append,
        )
    )
    print(json.dumps(report.summary(), indent=1))  # shown with -s, and on failure
    assert report.problems == [], _explain(report, log)
    assert report.acknowledged == MESSAGES
    assert sum(1 for k in report.kills if "during the burst" in k) == KILLS, report.kills
    assert report.received_unique == MESSAGES  # receiver-side dedupe by id: exactly once


def test_a_burst_wider_than_the_connection_pool_gets_acknowledgements_not_500s(
    store: tuple[str, str], tmp_path: Path
) -> None:
    """64 concurrent senders against one gateway process, no kills: every answer is an ack."""
    _kind, url = store
    log: list[str] = []
    report = run_crash_test(
        CrashConfig(
            database_url=url,
            workdir=tmp_path / "run",
            messages=150,
            concurrency=64,
            kills=0,
            kill_during_delivery=False,
            seed=SEED,
            stop_on_unexpected=True,
            log=log.append,
        )
    )
    assert report.problems == [], _explain(report, log)
    assert report.unexpected == {}, _explain(report, log)
    assert report.acknowledged == 150
