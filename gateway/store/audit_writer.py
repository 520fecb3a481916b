"""Writing read-path AuditEvents: synchronously (default) or in batches behind the response.

``sync``: the request's events are committed before its response is sent. A disclosure is
never without its record. Group commit: concurrent requests' events are written together —
while one commit runs, the events that arrive queue up, and the next transaction carries them
all; each request waits for the commit that holds its own rows (and fails if it fails).
Alone, a request costs one transaction; under load, one transaction serves many.

``batched``: the request hands its events to a per-process writer and answers at once; the
writer commits whatever has queued up in one transaction, again and again. Under load one
commit carries many events. The price: events still queued when the process is killed
(at most one batch, milliseconds) are lost. A clean shutdown writes everything.

AuditEvents that describe a write (a Consent recorded or withdrawn) never come here: they
commit in the write's own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

from gateway.store import audit_log
from gateway.store.repository import Store

AuditMode = Literal["sync", "batched"]
_MAX_BATCH = 1000
log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(self, store: Store, mode: AuditMode = "sync") -> None:
        self.store = store
        self.mode = mode
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Group commit (sync): requests waiting for the next commit, and its committer.
        self._waiting: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self.commits = 0  # transactions written (tests count them)

    async def write(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        if self.mode == "sync":
            await self._group_commit(events)
            return
        self._ensure_running()
        for event in events:
            self._queue.put_nowait(event)

    async def _group_commit(self, events: list[dict[str, Any]]) -> None:
        """Return once a committed transaction holds ``events`` (raise if it failed)."""
        loop = asyncio.get_running_loop()
        if (
            self._committer is None
            or self._committer.done()
            or self._committer.get_loop() is not loop
        ):
            self._wakeup = asyncio.Event()
            self._waiting = []
            self._committer = loop.create_task(self._commit_groups())
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append((events, done))
        assert self._wakeup is not None  # noqa: S101 - set with the committer
        self._wakeup.set()
        # Shielded: a cancelled request leaves its events in the group (recorded all the same).
        await asyncio.shield(done)

    async def _commit_groups(self) -> None:
        assert self._wakeup is not None  # noqa: S101 - set before the task starts
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    async with self.store.write("audit") as writer:
                        await audit_log.append(
                            writer.conn, [e for events, _ in group for e in events]
                        )
                except Exception as exc:  # each waiting request answers with this error
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                self.commits += 1
                for _, done in group:
                    if not done.done():
                        done.set_result(None)
            if self._closing:
                return

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(5):
            try:
                async with self.store.write("audit") as writer:
                    await audit_log.append(writer.conn, batch)
                return
            except Exception:
                log.exception("writing %d AuditEvents failed (attempt %d)", len(batch), attempt + 1)
                await asyncio.sleep(0.05 * 2**attempt)
        log.error("gave up writing %d AuditEvents", len(batch))

    async def drain(self) -> None:
        """Wait until every queued event is committed (tests, shutdown)."""
        if self.mode == "batched":
            await self._queue.join()

    async def close(self) -> None:
        await self.drain()
        if self._committer is not None and not self._committer.done():
            # Every waiting request gets its commit first, then the committer ends.
            self._closing = True
            assert self._wakeup is not None  # noqa: S101 - set with the committer
            self._wakeup.set()
            await self._committer
            self._closing = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
