"""Turn a resource into the rows of the search index (pure)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.search.dates import date_range, period_range
from gateway.search.parameters import SearchParam, params_for, walk

MAX_INDEXED = 255


@dataclass(slots=True)
class IndexRows:
    token: list[dict[str, Any]]
    string: list[dict[str, Any]]
    date: list[dict[str, Any]]
    reference: list[dict[str, Any]]


def normalize(text: str) -> str:
    """Case-fold and drop combining accents (é → e); Danish æ, ø, å stay letters."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", folded)


def split_reference(reference: str) -> tuple[str, str] | None:
    """``Patient/1``, ``http://x/fhir/Patient/1`` or ``Patient/1/_history/2`` → (type, id)."""
    if not reference or reference.startswith(("#", "urn:")) or "?" in reference:
        return None
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if not rtype[:1].isupper() or not rid:
        return None
    return rtype, rid


def _tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value["coding"]:
                if coding.get("code") is not None:
                    yield coding.get("system"), coding["code"]
        elif "code" in value:
            yield value.get("system"), value["code"]
        elif "value" in value and isinstance(value["value"], str):
            yield value.get("system"), value["value"]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in ("text", "family", "city", "district", "state", "postalCode", "country"):
            if isinstance(value.get(key), str):
                yield value[key]
        for key in ("given", "prefix", "suffix", "line"):
            for part in value.get(key, ()):
                if isinstance(part, str):
                    yield part


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            yield period_range(value)
    except ValueError:
        return


def _references(param: SearchParam, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        target = split_reference(value["reference"])
        if target and (not param.targets or target[0] in param.targets):
            yield target


def index_resource(resource: dict[str, Any]) -> IndexRows:
    """Every index row for ``resource`` (without the type/id columns)."""
    rows = IndexRows([], [], [], [])
    for param in params_for(resource["resourceType"]).values():
        seen: set[tuple[Any, ...]] = set()
        for path in param.paths:
            for value in walk(resource, path):
                if param.kind in ("token", "uri"):
                    for system, code in _tokens(value):
                        key: tuple[Any, ...] = ("t", system, code)
                        if key not in seen:
                            seen.add(key)
                            rows.token.append(
                                {
                                    "param": param.name,
                                    "system": system[:MAX_INDEXED] if system else None,
                                    "code": code[:MAX_INDEXED],
                                }
                            )
                elif param.kind == "string":
                    for text in _strings(value):
                        key = ("s", text)
                        if key not in seen:
                            seen.add(key)
                            rows.string.append(
                                {
                                    "param": param.name,
                                    "norm": normalize(text)[:MAX_INDEXED],
                                    "exact": text[:MAX_INDEXED],
                                }
                            )
                elif param.kind == "date":
                    for low, high in _dates(value):
                        rows.date.append({"param": param.name, "low": low, "high": high})
                elif param.kind == "reference":
                    for target_type, target_id in _references(param, value):
                        key = ("r", target_type, target_id)
                        if key not in seen:
                            seen.add(key)
                            rows.reference.append(
                                {
                                    "param": param.name,
                                    "target_type": target_type,
                                    "target_id": target_id[:MAX_INDEXED],
                                }
                            )
    return rows
