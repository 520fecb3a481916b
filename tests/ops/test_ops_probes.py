"""/healthz and /readyz on the real app."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from gateway.settings import Settings
from gateway.store.database import Database, head_revision


def _outcome_text(client: TestClient) -> str:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["code"] == "transient"
    text: str = issue["diagnostics"]
    assert "Traceback" not in text
    return text


def test_healthz_answers_without_a_database(ops_app: FastAPI) -> None:
    client = TestClient(ops_app)  # no `with`: the lifespan (and the database) never starts
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


def test_readyz_ok_when_migrated(ops_client: TestClient) -> None:
    response = ops_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": head_revision()},
    }


def test_readyz_503_before_start_up(ops_app: FastAPI) -> None:
    assert "not opened yet" in _outcome_text(TestClient(ops_app))


def test_readyz_503_when_schema_is_behind(ops_client: TestClient, ops_settings: Settings) -> None:
    path = ops_settings.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'older'")
    text = _outcome_text(ops_client)
    assert text.startswith("schema: database is at revision older")
    assert "brobygger db upgrade" in text


def test_readyz_503_when_schema_was_never_stamped(
    ops_client: TestClient, ops_settings: Settings
) -> None:
    path = ops_settings.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE alembic_version")
    assert _outcome_text(ops_client).startswith("schema: database is at revision none")


@pytest.fixture
def unreachable_database(ops_app: FastAPI, ops_client: TestClient) -> Iterator[Database]:
    """Swap in a PostgreSQL URL on a closed loopback port (nothing listens on port 1)."""
    healthy = ops_app.state.database
    database = Database("postgresql+psycopg://brobygger@127.0.0.1:1/brobygger")
    ops_app.state.database = database
    yield database
    ops_app.state.database = healthy
    assert ops_client.portal is not None
    ops_client.portal.call(database.dispose)


@pytest.mark.usefixtures("unreachable_database")
def test_readyz_503_when_database_unreachable(ops_client: TestClient) -> None:
    text = _outcome_text(ops_client)
    assert text.startswith("database: not reachable (")
    assert "127.0.0.1" not in text  # driver messages (hosts, users) stay out of the answer
