"""Structured logs: one JSON object per line on stderr, stamped with the current request.

Health data must never reach a log line, so records carry the route *template*, never the
path or query string, and exceptions are logged as their types and stack frames without their
messages (database errors quote SQL parameters, which may be CPR numbers). Loggers that print
SQL parameters or full URLs at INFO/DEBUG are held at WARNING whatever the level.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from gateway.ops._context import current_request

# Extra record attributes the formatter copies (``log.info(..., extra={"status": 200})``).
CONTEXT_FIELDS: Final = ("request_id", "participant", "method", "route", "status", "duration_ms")

# These log SQL with its parameters, or full URLs with query strings, below WARNING.
QUIET_LOGGERS: Final = ("sqlalchemy", "aiosqlite", "httpx", "httpcore")

# uvicorn's access lines contain the raw path and query string; ours replace them.
UVICORN_ACCESS_LOGGER: Final = "uvicorn.access"
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.asgi")

_ALREADY_LOGGED: Final = "_brobygger_logged"
_ALEMBIC_CHATTER: Final = ("Context impl ", "Will assume ")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (no newlines inside; non-ASCII kept as is)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = current_request()
        if context is not None:
            entry["request_id"] = context.request_id
            participant = context.participant
            if participant is not None:
                entry["participant"] = participant
            entry["method"] = context.method
            route = context.route
            if route is not None:
                entry["route"] = route
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc_type, exc, tb = record.exc_info
            assert exc_type is not None  # noqa: S101 - set together with exc
            entry["error"] = _qualified_name(exc_type)
            entry["traceback"] = _traceback_without_messages((exc_type, exc, tb))
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _qualified_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _traceback_without_messages(exc_info: ExcInfo) -> str:
    """Python's usual traceback, chained causes included, but each exception as its type only."""
    lines: list[str] = []
    seen: set[int] = set()

    def walk(exc: BaseException) -> None:
        seen.add(id(exc))
        cause = exc.__cause__
        context = None if exc.__suppress_context__ else exc.__context__
        if cause is not None and id(cause) not in seen:
            walk(cause)
            lines.append("\nThe above exception was the direct cause of the following:\n\n")
        elif context is not None and id(context) not in seen:
            walk(context)
            lines.append("\nDuring handling of the above exception, another occurred:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(exc.__traceback__))
        lines.append(f"{_qualified_name(type(exc))} (message withheld from the log)\n")

    walk(exc_info[1])
    return "".join(lines)


def mark_logged(exc: BaseException) -> None:
    """Note that ``exc`` (with its traceback) is in the log, so the server need not repeat it."""
    try:
        setattr(exc, _ALREADY_LOGGED, True)
    except AttributeError:  # exceptions with __slots__ and no __dict__
        pass


class _DropNoise(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" for exceptions we already logged, and
    the two lines Alembic logs each time ``/readyz`` reads the schema revision.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith("uvicorn"):
            return not getattr(record.exc_info[1], _ALREADY_LOGGED, False)
        if record.name == "alembic.runtime.migration" and isinstance(record.msg, str):
            return not record.msg.startswith(_ALEMBIC_CHATTER)
        return True


class _JsonStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())
        self.addFilter(_DropNoise())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def parse_level(level: str) -> int:
    """``"info"`` → ``logging.INFO``; unknown names are refused, not silently ignored."""
    numeric = logging.getLevelNamesMapping().get(level.strip().upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return numeric


def configure_logging(level: str) -> None:
    """Route every logger (uvicorn's included) to one JSON handler on stderr.

    Idempotent: several apps in one process (tests) share the single root handler; the last
    call sets the level.
    """
    numeric = parse_level(level)
    root = logging.getLogger()
    if not any(isinstance(h, _JsonStderrHandler) for h in root.handlers):
        root.addHandler(_JsonStderrHandler())
    root.setLevel(numeric)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
