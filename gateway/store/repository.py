"""The FHIR resource store: versioned writes, reads, history and search over SQLAlchemy Core.

Every write is one transaction that adds a version to ``resource_history``, replaces the
current row in ``resources`` and rewrites the resource's search index rows. ``Writer`` holds
the primitives that run inside such a transaction, so a transaction Bundle (``bundles.py``)
can do many writes atomically.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import (
    BadRequest,
    Conflict,
    GatewayError,
    Gone,
    NotFound,
    PreconditionFailed,
    StoreUnavailable,
)
from gateway.limits import SearchLimits, exceeded
from gateway.search.dates import format_instant, utc_now
from gateway.search.indexing import index_resource
from gateway.search.query import Include, SearchRequest, SortKey, parse_search
from gateway.store import identities
from gateway.store.database import Database
from gateway.store.schema import (
    INDEX_TABLES,
    idx_date,
    idx_reference,
    idx_string,
    idx_token,
    resource_history,
    resources,
)
from profiles import fhir_json

_SORT_TABLES = {"date": idx_date, "string": idx_string, "token": idx_token, "uri": idx_token}


@dataclass(slots=True)
class WriteResult:
    resource: dict[str, Any]
    created: bool
    # True when a conditional create found an existing match and wrote nothing.
    matched_existing: bool = False
    # True when an update carried exactly the stored content: no new version was made.
    unchanged: bool = False

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def version(self) -> str:
        return str(self.resource["meta"]["versionId"])


@dataclass(slots=True)
class SearchResult:
    matches: list[dict[str, Any]]
    included: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None
    # Whether more matches follow this page (known even when the total is not counted).
    has_more: bool = False


class Visibility(Protocol):
    """Decides which stored resources the caller may see (the consent gate implements it)."""

    # While a search runs, the store lends its read connection here (one round trip less).
    connection: AsyncConnection | None

    async def matches(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The visible ones among ``resources`` (possibly redacted copies), in order."""
        ...

    async def includes(
        self, resources: list[dict[str, Any]], matches: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The visible ones among included ``resources``, given the visible ``matches``."""
        ...


_CANDIDATE_CHUNK = 500


@dataclass(slots=True)
class HistoryEntry:
    resource_type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    resource: dict[str, Any] | None


def new_id() -> str:
    return str(uuid.uuid4())


def _etag_version(if_match: str) -> str:
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


class ConcurrentWrite(Conflict):
    """Another transaction wrote the same row (or a citizen's identifier) first: retry."""


def _translate_db_error(exc: DBAPIError, operation: str) -> GatewayError:
    if isinstance(exc, IntegrityError):
        return ConcurrentWrite(f"concurrent {operation}; retry with the current version")
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"the store is unavailable for {operation}; retry later")
    return StoreUnavailable(f"store error during {operation}")


_UNREAD: Any = object()


@dataclass(slots=True, frozen=True)
class _Row:
    """A current row as a transaction knows it."""

    version: int
    deleted: bool
    content: str | None


class _Pending:
    """Rows a transaction has written but not yet sent (see ``Writer``)."""

    __slots__ = ("clear", "history", "index", "inserts", "updates")

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        # (type, id) -> the new current row; inserted when new to the table, else updated.
        self.inserts: dict[tuple[str, str], dict[str, Any]] = {}
        self.updates: dict[tuple[str, str], dict[str, Any]] = {}
        # Resources whose stored index rows go (type -> ids); their new rows per table.
        self.clear: dict[str, set[str]] = {}
        self.index: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}

    def __bool__(self) -> bool:
        return bool(self.history or self.inserts or self.updates or self.clear or self.index)


_INDEX_NAMES = ("token", "string", "date", "reference")
_INDEX_BY_NAME = dict(zip(_INDEX_NAMES, INDEX_TABLES, strict=True))
_UPDATE_CURRENT = (
    update(resources)
    .where(resources.c.type == bindparam("k_type"), resources.c.id == bindparam("k_id"))
    .values(
        version=bindparam("version"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
        content=bindparam("content"),
    )
)
_INSERT_HISTORY = insert(resource_history)
_INSERT_CURRENT = insert(resources)
_INSERT_INDEX = {name: insert(table) for name, table in _INDEX_BY_NAME.items()}


class _FlushingConnection:
    """The transaction's connection as everyone else sees it: pending rows go out first.

    The writer keeps its rows back and sends them in a few ``executemany`` statements
    (one per table). Any other statement on the transaction (a conditional match, a consent
    look-up, an AuditEvent, a message record, the commit) sends them before it runs, so
    every reader in the transaction sees exactly what a row-by-row writer would have shown.
    """

    def __init__(self, conn: AsyncConnection, writer: Writer) -> None:
        self._conn = conn
        self._writer = writer

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        await self._writer.flush()
        return await self._conn.execute(*args, **kwargs)

    async def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        await self._writer.flush()
        return await self._conn.exec_driver_sql(*args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        await self._writer.flush()
        return await self._conn.scalar(*args, **kwargs)

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        await self._writer.flush()
        return await self._conn.scalars(*args, **kwargs)

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        await self._writer.flush()
        return await self._conn.stream(*args, **kwargs)

    async def run_sync(self, *args: Any, **kwargs: Any) -> Any:
        await self._writer.flush()
        return await self._conn.run_sync(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class Writer:
    """Write primitives bound to one open transaction (the unguarded store: callers outside
    ``gateway.store`` reach it only through ``gateway.data.GuardedWriter``).

    Writes in bulk: the current row of each resource is read (and locked, on PostgreSQL)
    once per transaction — :meth:`prefetch` reads many in one query — and kept; the
    history, current and index rows of every write wait in ``_pending`` until
    :meth:`flush` sends them as one ``executemany`` per table (index rows: one delete per
    table and type, then one insert per table). ``conn`` flushes before any other
    statement, and the store flushes before the commit.
    """

    def __init__(self, conn: AsyncConnection, store: Store) -> None:
        self._raw = conn
        self.conn: AsyncConnection = cast(AsyncConnection, _FlushingConnection(conn, self))
        self.store = store
        # (type, id) -> the current row as this transaction knows it (None: not stored).
        self._current: dict[tuple[str, str], _Row | None] = {}
        # Keys whose row is in the ``resources`` table (in the database, flushed or not).
        self._in_table: set[tuple[str, str]] = set()
        self._pending = _Pending()

    def _lock(self, query: Select[Any]) -> Select[Any]:
        return query if self.store.database.is_sqlite else query.with_for_update()

    async def prefetch(self, keys: Sequence[tuple[str, str]]) -> None:
        """Read (and lock) the current rows of ``keys`` in one query."""
        missing = sorted({key for key in keys if key not in self._current})
        for first in range(0, len(missing), 500):
            chunk = missing[first : first + 500]
            by_type: dict[str, list[str]] = {}
            for rtype, rid in chunk:
                self._current[(rtype, rid)] = None
                by_type.setdefault(rtype, []).append(rid)
            query = self._lock(
                select(
                    resources.c.type,
                    resources.c.id,
                    resources.c.version,
                    resources.c.deleted,
                    resources.c.content,
                ).where(
                    or_(
                        *[
                            and_(resources.c.type == rtype, resources.c.id.in_(ids))
                            for rtype, ids in by_type.items()
                        ]
                    )
                )
            )
            for row in await self._raw.execute(query):
                key = (row.type, row.id)
                self._current[key] = _Row(row.version, row.deleted, row.content)
                self._in_table.add(key)

    async def current(self, rtype: str, rid: str) -> Any:
        """The current row (version, deleted, content), locked for this transaction."""
        key = (rtype, rid)
        if key not in self._current:
            await self.prefetch([key])
        return self._current[key]

    def _remember(self, rtype: str, rid: str, row: dict[str, Any], *, history: str) -> None:
        key = (rtype, rid)
        self._pending.history.append(
            {
                "type": rtype,
                "id": rid,
                "version": row["version"],
                "last_updated": row["last_updated"],
                "deleted": row["deleted"],
                "method": history,
                "content": row["content"],
            }
        )
        if key in self._in_table:
            self._pending.updates[key] = {"k_type": rtype, "k_id": rid, **row}
        else:
            self._pending.inserts[key] = {"type": rtype, "id": rid, **row}
        self._current[key] = _Row(row["version"], row["deleted"], row["content"])

    async def flush(self) -> None:
        """Send every pending row: a handful of statements, whatever the number of writes."""
        pending = self._pending
        if not pending:
            return
        self._pending = _Pending()
        conn = self._raw
        if pending.history:
            await conn.execute(_INSERT_HISTORY, pending.history)
        if pending.inserts:
            await conn.execute(_INSERT_CURRENT, list(pending.inserts.values()))
            self._in_table.update(pending.inserts)
        if pending.updates:
            await conn.execute(_UPDATE_CURRENT, list(pending.updates.values()))
        for rtype, ids in pending.clear.items():
            ordered = sorted(ids)
            for table in INDEX_TABLES:
                for first in range(0, len(ordered), 500):
                    await conn.execute(
                        delete(table).where(
                            table.c.type == rtype, table.c.id.in_(ordered[first : first + 500])
                        )
                    )
        for name in _INDEX_NAMES:
            rows = [row for per in pending.index.values() for row in per.get(name, ())]
            if rows:
                await conn.execute(_INSERT_INDEX[name], rows)

    async def put(
        self,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
        must_exist: bool = False,
        current: Any = _UNREAD,
    ) -> WriteResult:
        """Write ``resource`` as the next version of its type/id (create if new).

        ``current``: the row :meth:`current` returned in this transaction, if read already.
        """
        rtype, rid = resource["resourceType"], resource["id"]
        if current is _UNREAD:
            current = await self.current(rtype, rid)
        if current is None and must_exist:
            raise NotFound(f"{rtype}/{rid} does not exist")
        if if_match is not None:
            expected = _etag_version(if_match)
            if current is None or str(current.version) != expected:
                raise PreconditionFailed(
                    f"If-Match {if_match} does not match the current version of {rtype}/{rid}",
                    expression="If-Match",
                )
        if current is not None and not current.deleted:
            stored_now: dict[str, Any] = fhir_json.loads(current.content)
            if _same_content(stored_now, resource):
                # Nothing changed: keep the version (re-ingesting a document is a no-op).
                return WriteResult(stored_now, created=False, unchanged=True)
        version = 1 if current is None else current.version + 1
        now = utc_now()
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(now)
        stored = {**resource, "meta": meta}
        # Keep resourceType and id first on the wire, as people expect to read them.
        stored = {"resourceType": rtype, "id": rid, **stored}
        content = fhir_json.dumps(stored)
        row = {"version": version, "last_updated": now, "deleted": False, "content": content}
        self._remember(rtype, rid, row, history="POST" if current is None else "PUT")
        self._reindex(rtype, rid, stored, had_rows=current is not None)
        if rtype == "Patient":
            # patient_identities is not kept back: its checks answer at once (409).
            await identities.claim(self._raw, rid, stored)
        self.store.written += 1
        created = current is None or bool(current.deleted)
        return WriteResult(stored, created=created)

    async def delete(self, rtype: str, rid: str) -> int | None:
        """Tombstone the resource; return the tombstone's version (None if nothing to do)."""
        current = await self.current(rtype, rid)
        if current is None or current.deleted:
            return None
        version = current.version + 1
        now = utc_now()
        row = {"version": version, "last_updated": now, "deleted": True, "content": None}
        self._remember(rtype, rid, row, history="DELETE")
        self._clear_index(rtype, rid)
        if rtype == "Patient":
            await identities.release(self._raw, rid)
        return int(version)

    def _clear_index(self, rtype: str, rid: str) -> None:
        self._pending.clear.setdefault(rtype, set()).add(rid)
        self._pending.index.pop((rtype, rid), None)

    def _reindex(self, rtype: str, rid: str, resource: dict[str, Any], *, had_rows: bool) -> None:
        if had_rows:
            # Index rows already sent (earlier versions, flushed or stored before) go first.
            self._pending.clear.setdefault(rtype, set()).add(rid)
        rows = index_resource(resource)
        self._pending.index[(rtype, rid)] = {
            name: [{"type": rtype, "id": rid, **v} for v in values]
            for name, values in zip(
                _INDEX_NAMES, (rows.token, rows.string, rows.date, rows.reference), strict=True
            )
            if values
        }

    async def search_ids(self, rtype: str, criteria: str, *, limit: int = 2) -> list[str]:
        """Ids matching a conditional ``criteria`` query string (for If-None-Exist etc.).

        On PostgreSQL the criteria are locked for the rest of the transaction, so two
        concurrent conditional creates of the same thing cannot both create it. (SQLite
        writers are serialised already.)
        """
        request = self.store.parse(rtype, _parse_qs(criteria))
        if not request.conditions:
            raise BadRequest("a conditional operation needs search criteria", expression=rtype)
        if not self.store.database.is_sqlite:
            await self.conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(rtype, criteria)}
            )
        query = (
            select(resources.c.id)
            .where(resources.c.type == rtype, resources.c.deleted == false(), *request.conditions)
            .limit(limit)
        )
        return [row.id for row in await self.conn.execute(query)]

    async def search_ids_many(
        self, wanted: Sequence[tuple[str, str, int]]
    ) -> list[list[str]] | None:
        """``search_ids`` for many (type, criteria, limit) at once: one statement (and one
        lock statement on PostgreSQL) instead of one per criterion.

        None when a criterion does not parse: the caller then asks one by one, so that the
        first problem in its order is the one reported, as before.
        """
        requests: list[tuple[str, SearchRequest, int]] = []
        for rtype, criteria, limit in wanted:
            try:
                request = self.store.parse(rtype, _parse_qs(criteria))
            except GatewayError:
                return None
            if not request.conditions:
                return None
            requests.append((criteria, request, limit))
        if not requests:
            return []
        if not self.store.database.is_sqlite:
            keys = sorted(
                {
                    _lock_key(request.resource_type, criteria)
                    for criteria, request, _limit in requests
                }
            )
            # In key order: two transactions locking overlapping criteria cannot deadlock.
            await self.conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(k) FROM "
                    "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS ordered"
                ),
                {"keys": keys},
            )
        found: list[list[str]] = [[] for _ in requests]
        for first in range(0, len(requests), 100):
            members = [
                select(
                    select(literal(first + n, Integer).label("n"), resources.c.id.label("id"))
                    .where(
                        resources.c.type == request.resource_type,
                        resources.c.deleted == false(),
                        *request.conditions,
                    )
                    .limit(limit)
                    .subquery()
                )
                for n, (_criteria, request, limit) in enumerate(requests[first : first + 100])
            ]
            query = members[0] if len(members) == 1 else union_all(*members)
            for row in await self.conn.execute(query):
                found[row.n].append(row.id)
        return found

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        rtype = resource["resourceType"]
        if if_none_exist:
            found = await self.search_ids(rtype, if_none_exist)
            if len(found) > 1:
                raise PreconditionFailed(
                    "If-None-Exist matches more than one resource", expression="If-None-Exist"
                )
            if found:
                existing = await self.store.read(rtype, found[0], conn=self.conn)
                return WriteResult(existing, created=False, matched_existing=True)
        return await self.put({**resource, "id": new_id()})


def _without_version(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def _same_content(stored: dict[str, Any], incoming: dict[str, Any]) -> bool:
    # Compared as JSON text: 0.40 and 0.4 are equal Decimals but different FHIR values.
    return fhir_json.dumps(_without_version(stored), sort_keys=True) == fhir_json.dumps(
        _without_version(incoming), sort_keys=True
    )


def _lock_key(rtype: str, criteria: str) -> int:
    """The advisory lock of a conditional criterion (PostgreSQL)."""
    key = f"{rtype}?{'&'.join(sorted(criteria.lstrip('?').split('&')))}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _parse_qs(criteria: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(criteria.lstrip("?"), keep_blank_values=True)


class Store:
    """The gateway's resource store (stateless; any number of processes may share it)."""

    def __init__(self, database: Database, *, fhir_base: str = "") -> None:
        self.database = database
        self.fhir_base = fhir_base
        # One writer at a time per process on SQLite (the file takes one writer anyway);
        # BEGIN IMMEDIATE plus busy_timeout orders writers across processes.
        self._sqlite_write_lock = asyncio.Lock() if database.is_sqlite else None
        # SQLite plans well only with statistics (without them it walks every resource of a
        # type in sort order instead of looking up the few index matches: 30-250 ms instead
        # of 0.1 ms at 50,000 Observations). They are refreshed as the data grows
        # geometrically; PostgreSQL's autovacuum does this by itself.
        self.written = 0
        self._analyze_after = 1
        # The app's AuditWriter (gateway.store.audit_writer), when one is running.
        self.audit_writer: Any = None
        # The app sets its settings' search limits (gateway.limits).
        self.search_limits = SearchLimits()

    # --- transactions ---------------------------------------------------------------------

    @asynccontextmanager
    async def write(self, operation: str = "write") -> AsyncIterator[Writer]:
        """One write transaction; commits on success, rolls back on any error."""
        try:
            if self._sqlite_write_lock is not None:
                async with self._sqlite_write_lock:
                    async with self.database.engine.connect() as conn:
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                        try:
                            writer = Writer(conn, self)
                            yield writer
                            await writer.flush()
                        except BaseException:
                            await conn.exec_driver_sql("ROLLBACK")
                            raise
                        await conn.exec_driver_sql("COMMIT")
                        if self.written >= self._analyze_after:
                            await self._analyze(conn)
            else:
                async with self.database.engine.begin() as conn:
                    writer = Writer(conn, self)
                    yield writer
                    await writer.flush()
        except DBAPIError as exc:
            raise _translate_db_error(exc, operation) from exc
        except PoolTimeout as exc:  # every connection busy: the caller may retry
            raise StoreUnavailable(f"the store is busy ({operation}); retry later") from exc

    async def refresh_statistics(self) -> None:
        """SQLite: gather planner statistics now (at start-up; cheap, bounded)."""
        if self._sqlite_write_lock is None:
            return
        async with self._sqlite_write_lock, self.database.engine.connect() as conn:
            await self._analyze(conn)

    async def _analyze(self, conn: AsyncConnection) -> None:
        # analysis_limit bounds the work per index (milliseconds, whatever the table size).
        await conn.exec_driver_sql("PRAGMA analysis_limit=400")
        await conn.exec_driver_sql("ANALYZE")
        total = (await conn.exec_driver_sql("SELECT count(*) FROM resources")).scalar_one()
        self.written = 0
        self._analyze_after = max(500, int(total) // 2)

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.database.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise _translate_db_error(exc, "read") from exc
        except PoolTimeout as exc:
            raise StoreUnavailable("the store is busy (read); retry later") from exc

    # --- writes ---------------------------------------------------------------------------

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        async with self.write("create") as writer:
            return await writer.create(resource, if_none_exist=if_none_exist)

    async def update(
        self,
        rtype: str,
        rid: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        async with self.write("update") as writer:
            return await writer.put({**resource, "id": rid}, if_match=if_match)

    async def delete(self, rtype: str, rid: str) -> int | None:
        async with self.write("delete") as writer:
            return await writer.delete(rtype, rid)

    # --- reads ----------------------------------------------------------------------------

    async def read(
        self, rtype: str, rid: str, *, conn: AsyncConnection | None = None
    ) -> dict[str, Any]:
        query = select(resources.c.deleted, resources.c.content, resources.c.version).where(
            resources.c.type == rtype, resources.c.id == rid
        )
        if conn is not None:
            row = (await conn.execute(query)).first()
        else:
            async with self.read_connection() as own:
                row = (await own.execute(query)).first()
        if row is None:
            raise NotFound(f"{rtype}/{rid} is not known")
        if row.deleted:
            raise Gone(f"{rtype}/{rid} was deleted", headers={"ETag": f'W/"{row.version}"'})
        content: dict[str, Any] = fhir_json.loads(row.content)
        return content

    async def vread(self, rtype: str, rid: str, version: str) -> dict[str, Any]:
        if not version.isdigit():
            raise NotFound(f"{rtype}/{rid} has no version {version!r}")
        query = select(resource_history.c.deleted, resource_history.c.content).where(
            resource_history.c.type == rtype,
            resource_history.c.id == rid,
            resource_history.c.version == int(version),
        )
        async with self.read_connection() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"{rtype}/{rid} has no version {version}")
        if row.deleted:
            raise Gone(f"version {version} of {rtype}/{rid} is a deletion")
        content: dict[str, Any] = fhir_json.loads(row.content)
        return content

    async def history(
        self,
        rtype: str | None = None,
        rid: str | None = None,
        *,
        since: datetime | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[list[HistoryEntry], int]:
        """Versions newest first, and how many there are in all."""
        h = resource_history
        conditions: list[ColumnElement[bool]] = []
        if rtype is not None:
            conditions.append(h.c.type == rtype)
        if rid is not None:
            conditions.append(h.c.id == rid)
        if since is not None:
            conditions.append(h.c.last_updated >= since)
        query = (
            select(h)
            .where(*conditions)
            .order_by(h.c.last_updated.desc(), h.c.type, h.c.id, h.c.version.desc())
            .limit(count)
            .offset(offset)
        )
        count_query = select(func.count()).select_from(h).where(*conditions)
        async with self.read_connection() as conn:
            rows = (await conn.execute(query)).all()
            total = int((await conn.execute(count_query)).scalar_one())
        if rid is not None and total == 0:
            raise NotFound(f"{rtype}/{rid} is not known")
        entries = [
            HistoryEntry(
                r.type,
                r.id,
                r.version,
                r.last_updated,
                r.method,
                fhir_json.loads(r.content) if r.content else None,
            )
            for r in rows
        ]
        return entries, total

    # --- search ---------------------------------------------------------------------------

    def parse(
        self,
        rtype: str,
        items: list[tuple[str, str]],
        *,
        lenient: bool = False,
        default_count: int = 50,
        max_count: int = 500,
    ) -> SearchRequest:
        return parse_search(
            rtype,
            items,
            fhir_base=self.fhir_base,
            lenient=lenient,
            default_count=default_count,
            max_count=max_count,
            limits=self.search_limits,
        )

    def _order(self, request: SearchRequest) -> list[Any]:
        order: list[Any] = []
        keys = request.sort or [SortKey("_lastUpdated", False)]
        for key in keys:
            if key.name == "_id":
                column: Any = resources.c.id
            elif key.name == "_lastUpdated":
                column = resources.c.last_updated
            else:
                column = self._sort_value(request.resource_type, key)
            order.append(
                column.desc().nulls_last() if key.descending else column.asc().nulls_last()
            )
        order.append(resources.c.id.asc())
        return order

    def _sort_value(self, rtype: str, key: SortKey) -> Any:
        from gateway.search.parameters import params_for

        param = params_for(rtype)[key.name]
        table = _SORT_TABLES[param.kind].alias()
        column = {"date": "low", "string": "norm"}.get(param.kind, "code")
        aggregate = func.max if key.descending else func.min
        return (
            select(aggregate(table.c[column]))
            .where(table.c.type == rtype, table.c.id == resources.c.id, table.c.param == key.name)
            .scalar_subquery()
        )

    def _matching(self, request: SearchRequest) -> list[ColumnElement[bool]]:
        return [
            resources.c.type == request.resource_type,
            resources.c.deleted == false(),
            *request.conditions,
        ]

    async def search(
        self, request: SearchRequest, *, visibility: Visibility | None = None
    ) -> SearchResult:
        """One page of matches (and includes). With ``visibility``, hidden resources are
        filtered out *before* paging and counting, so pages and totals reveal nothing."""
        if visibility is not None:
            return await self._search_visible(request, visibility)
        where = self._matching(request)
        async with self.read_connection() as conn:
            total: int | None = None
            if request.summary_count or request.total != "none":
                count_query = select(func.count()).select_from(resources).where(*where)
                total = int((await conn.execute(count_query)).scalar_one())
            if request.summary_count or request.count == 0:
                return SearchResult([], total=total)
            query: Select[Any] = (
                select(resources.c.id, resources.c.content)
                .where(*where)
                .order_by(*self._order(request))
                .limit(request.count + 1)
                .offset(request.offset)
            )
            rows = (await conn.execute(query)).all()
            matches = [fhir_json.loads(r.content) for r in rows[: request.count]]
            included = await self._included(conn, request, matches)
        return SearchResult(matches, included, total, has_more=len(rows) > request.count)

    async def _search_visible(self, request: SearchRequest, visibility: Visibility) -> SearchResult:
        where = self._matching(request)
        need_all = request.summary_count or request.total != "none"
        wanted = request.offset + request.count + 1
        visible: list[dict[str, Any]] = []
        exhausted = False
        async with self.read_connection() as conn:
            visibility.connection = conn
            try:
                position = 0
                while need_all or len(visible) < wanted:
                    query: Select[Any] = (
                        select(resources.c.id, resources.c.content)
                        .where(*where)
                        .order_by(*self._order(request))
                        .limit(_CANDIDATE_CHUNK)
                        .offset(position)
                    )
                    rows = (await conn.execute(query)).all()
                    position += len(rows)
                    visible += await visibility.matches([fhir_json.loads(r.content) for r in rows])
                    if len(rows) < _CANDIDATE_CHUNK:
                        exhausted = True
                        break
                total = len(visible) if exhausted and need_all else None
                if request.summary_count or request.count == 0:
                    return SearchResult([], total=total)
                page = visible[request.offset : request.offset + request.count]
                included = await self._included(conn, request, page)
                if included:
                    included = await visibility.includes(included, page)
            finally:
                visibility.connection = None
        has_more = len(visible) > request.offset + request.count
        return SearchResult(page, included, total, has_more=has_more)

    async def referring_to(
        self, rtype: str, rid: str, *, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Every current resource with a reference to ``rtype/rid`` (for $everything)."""
        query = (
            select(resources.c.content)
            .where(
                resources.c.deleted == false(),
                tuple_(resources.c.type, resources.c.id).in_(
                    select(idx_reference.c.type, idx_reference.c.id).where(
                        idx_reference.c.target_type == rtype, idx_reference.c.target_id == rid
                    )
                ),
            )
            .order_by(resources.c.type, resources.c.last_updated, resources.c.id)
            .limit(limit)
        )
        async with self.read_connection() as conn:
            rows = (await conn.execute(query)).all()
        return [fhir_json.loads(r.content) for r in rows]

    async def _included(
        self,
        conn: AsyncConnection,
        request: SearchRequest,
        matches: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        if not matches or not (request.includes or request.revincludes):
            return []
        seen = {(r["resourceType"], r["id"]) for r in matches}
        included: list[dict[str, Any]] = []
        frontier = list(seen)
        cap = self.search_limits.max_included_resources

        def room(new: list[dict[str, Any]]) -> int:
            # One row more than the cap allows: reaching it means the cap is exceeded.
            return cap - len(included) - len(new) + 1

        for depth in range(3):
            new: list[dict[str, Any]] = []
            for inc in request.includes:
                if depth > 0 and not inc.iterate:
                    continue
                new += await self._forward(conn, inc, frontier, seen, room(new))
            if depth == 0 or any(i.iterate for i in request.revincludes):
                for inc in request.revincludes:
                    if depth > 0 and not inc.iterate:
                        continue
                    new += await self._reverse(conn, inc, frontier, seen, room(new))
            included += new
            frontier = [(r["resourceType"], r["id"]) for r in new]
            if not frontier or not any(i.iterate for i in request.includes + request.revincludes):
                break
        return included

    async def _forward(
        self,
        conn: AsyncConnection,
        inc: Include,
        frontier: Sequence[tuple[str, str]],
        seen: set[tuple[str, str]],
        room: int,
    ) -> list[dict[str, Any]]:
        ids = [rid for rtype, rid in frontier if rtype == inc.source_type]
        if not ids:
            return []
        conds = [
            idx_reference.c.type == inc.source_type,
            idx_reference.c.id.in_(ids),
            idx_reference.c.param == inc.param,
        ]
        if inc.target_type:
            conds.append(idx_reference.c.target_type == inc.target_type)
        targets = select(idx_reference.c.target_type, idx_reference.c.target_id).where(*conds)
        query = select(resources.c.type, resources.c.id, resources.c.content).where(
            tuple_(resources.c.type, resources.c.id).in_(targets),
            resources.c.deleted == false(),
        )
        return await self._included_rows(conn, query, seen, room)

    async def _reverse(
        self,
        conn: AsyncConnection,
        inc: Include,
        frontier: Sequence[tuple[str, str]],
        seen: set[tuple[str, str]],
        room: int,
    ) -> list[dict[str, Any]]:
        pairs = [(rtype, rid) for rtype, rid in frontier if inc.target_type in (None, rtype)]
        if not pairs:
            return []
        # A row-value IN, not one OR per pair: SQLite refuses expressions over 1000 deep.
        sources = select(idx_reference.c.id).where(
            idx_reference.c.type == inc.source_type,
            idx_reference.c.param == inc.param,
            tuple_(idx_reference.c.target_type, idx_reference.c.target_id).in_(pairs),
        )
        query = select(resources.c.type, resources.c.id, resources.c.content).where(
            resources.c.type == inc.source_type,
            resources.c.id.in_(sources),
            resources.c.deleted == false(),
        )
        return await self._included_rows(conn, query, seen, room)

    async def _included_rows(
        self, conn: AsyncConnection, query: Select[Any], seen: set[tuple[str, str]], room: int
    ) -> list[dict[str, Any]]:
        rows = (await conn.execute(query.limit(max(room, 1)))).all()
        if len(rows) >= room:
            cap = self.search_limits.max_included_resources
            raise exceeded(
                "search_max_included_resources",
                cap,
                "_include/_revinclude would add too many resources to one page; "
                "ask for a smaller _count",
                "_include",
            )
        return self._new_rows(rows, seen)

    @staticmethod
    def _new_rows(rows: Any, seen: set[tuple[str, str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for row in rows:
            key = (row.type, row.id)
            if key not in seen:
                seen.add(key)
                out.append(fhir_json.loads(row.content))
        return out
