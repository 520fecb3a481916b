"""Fixtures for the ingest tests: a store (SQLite and PostgreSQL) with the demo participants."""

from __future__ import annotations

import pytest

from gateway.participants.demo import ensure_demo_participants
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store


@pytest.fixture
async def store(database: Database, settings: Settings) -> Store:
    """A store whose participant directory holds the demo participants (the samples' senders)."""
    store = Store(database, fhir_base=settings.fhir_base)
    await ensure_demo_participants(settings, database, store)
    return store
