"""Placeholder: demo participants (being written)."""

from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store


async def ensure_demo_participants(settings: Settings, database: Database, store: Store) -> None:
    return None
