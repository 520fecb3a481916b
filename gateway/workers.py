"""CPU-heavy pure work (parse, map, validate) in worker processes, off the event loop.

A thread would not do: mapping and validation are pure Python and hold the GIL, so the event
loop (``/healthz``, every other client's read) would wait for them. Worker processes come from
a ``forkserver`` (a clean process that imported the pure packages once, so a new worker is a
cheap fork, never a fork of the threaded server); at most ``cpu_workers`` run at once and the
rest wait their turn on the event loop, costing nothing.

Each job gets a CPU budget: a ``SIGPROF`` timer in the worker raises ``BudgetExceeded``
inside the job, which becomes a 422 OperationOutcome. A worker that does not come back within
a wall-clock backstop (stuck in C, killed) is replaced, and the pool with it.

One pool per process, started on first use: every app in the process shares it (the jobs
are pure; nothing of an app lives in a worker).
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, TypeVar

from gateway.errors import BudgetExceeded, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

# Modules every worker needs: imported once in the fork server, not in each worker.
_PRELOAD = ["mappings", "profiles", "profiles.fhir_release", "gateway.workers"]
# A worker is replaced after this many jobs: whatever a job left behind goes with it.
_TASKS_PER_WORKER = 200
# Wall-clock backstop: the CPU budget times this, plus this many seconds (a busy machine
# stretches wall time; a worker this late is stuck, not slow).
_BACKSTOP_FACTOR = 4
_BACKSTOP_EXTRA_SECONDS = 30.0
# How often a worker checks that the gateway process still exists.
_WATCH_SECONDS = 0.5


class _OverBudget(Exception):
    """Raised inside a worker by the CPU timer."""


def _on_timer(_signum: int, _frame: Any) -> None:
    raise _OverBudget


def _watch_parent(parent_pid: int) -> None:
    """In each worker: end when the gateway process is gone.

    A pool worker waits on its job queue, whose pipe it holds both ends of, and the fork
    server keeps running while any worker holds its "alive" pipe: neither notices a gateway
    that was killed. Left alone they would live on (and keep the gateway's stdout open).
    """

    def watch() -> None:
        while True:
            time.sleep(_WATCH_SECONDS)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # pid reused by another user's process: ours is gone
                os._exit(0)

    threading.Thread(target=watch, name="brobygger-parent-watch", daemon=True).start()


def _run_with_budget(budget_seconds: float, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In the worker: run ``fn(*args)`` with a CPU-time budget (``ITIMER_PROF``)."""
    signal.signal(signal.SIGPROF, _on_timer)
    signal.setitimer(signal.ITIMER_PROF, budget_seconds)
    try:
        return fn(*args)
    except _OverBudget:
        raise BudgetExceeded(
            f"the document used up its CPU budget of {budget_seconds:g} s before it was "
            "read, mapped and validated (limit BROBYGGER_DOCUMENT_CPU_BUDGET_SECONDS)"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


class CpuPool:
    """A bounded pool of worker processes with a CPU budget per job."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(_PRELOAD)
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=context,
                    max_tasks_per_child=_TASKS_PER_WORKER,
                    initializer=_watch_parent,
                    initargs=(os.getpid(),),
                )
            return self._executor

    def _slot(self) -> asyncio.Semaphore:
        # One semaphore per event loop (tests run many loops in one process).
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is None:
            for old in [known for known in self._slots if known.is_closed()]:
                del self._slots[old]
            slot = self._slots[loop] = asyncio.Semaphore(self.workers)
        return slot

    async def run(self, budget_seconds: float, fn: Callable[P, T], *args: Any) -> T:
        """``fn(*args)`` in a worker process; ``BudgetExceeded`` when it runs out of CPU."""
        async with self._slot():
            executor = self._pool()
            try:
                future = executor.submit(_run_with_budget, budget_seconds, fn, args)
            except BrokenProcessPool:
                self._replace(executor)
                executor = self._pool()
                future = executor.submit(_run_with_budget, budget_seconds, fn, args)
            backstop = budget_seconds * _BACKSTOP_FACTOR + _BACKSTOP_EXTRA_SECONDS
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), backstop)
            except TimeoutError:
                self._replace(executor, kill=True)
                raise BudgetExceeded(
                    "the document was not read, mapped and validated in time "
                    "(limit BROBYGGER_DOCUMENT_CPU_BUDGET_SECONDS)"
                ) from None
            except BrokenProcessPool:
                self._replace(executor)
                raise StoreUnavailable(
                    "a worker process ended while reading the document; retry later"
                ) from None

    def _replace(self, executor: ProcessPoolExecutor, *, kill: bool = False) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        if kill:
            # The executor keeps its processes private; a stuck one must go all the same.
            for process in list(getattr(executor, "_processes", {}).values()):
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_pools: dict[int, CpuPool] = {}
_pools_lock = threading.Lock()


def cpu_pool(workers: int) -> CpuPool:
    """The process's pool of ``workers`` worker processes (created on first use)."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = CpuPool(workers)
        return pool


@atexit.register
def _shutdown_pools() -> None:
    for pool in list(_pools.values()):
        pool.shutdown()


__all__ = ["CpuPool", "cpu_pool"]
