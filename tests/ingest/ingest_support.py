"""Shared by the ingest tests: the sample documents and row counts of the store."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from gateway.store.repository import Store
from gateway.store.schema import resource_history, resources

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"


def sample(relative: str) -> bytes:
    return (SAMPLES / relative).read_bytes()


def all_samples() -> list[Path]:
    return sorted(SAMPLES.rglob("*.xml"))


async def row_counts(store: Store) -> tuple[int, int]:
    """(versions in history, current resources)."""
    async with store.read_connection() as conn:
        versions = (
            await conn.execute(select(func.count()).select_from(resource_history))
        ).scalar_one()
        current = (await conn.execute(select(func.count()).select_from(resources))).scalar_one()
    return int(versions), int(current)
