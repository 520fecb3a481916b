"""Parse FHIR search parameters into SQL conditions over the store's index tables.

``parse_search`` reads a query string (as a list of key/value pairs) into a ``SearchRequest``:
the filter conditions, sort, paging, includes and warnings. Unknown parameters are errors
unless the caller asked for lenient handling, in which case they become warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, false, not_, or_, select

from gateway.errors import BadRequest, Issue, UnknownSearchParameter
from gateway.limits import SearchLimits, exceeded
from gateway.search.dates import date_range
from gateway.search.indexing import normalize, split_reference
from gateway.search.parameters import (
    RESULT_PARAMS,
    SEARCH_PARAMS,
    SearchParam,
    params_for,
)
from gateway.store.schema import idx_date, idx_reference, idx_string, idx_token, resources

_DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not", "missing"}),
    "uri": frozenset({"missing"}),
    "string": frozenset({"exact", "contains", "missing"}),
    "date": frozenset({"missing"}),
    "reference": frozenset({"missing"}),
}
TotalMode = Literal["none", "estimate", "accurate"]


@dataclass(frozen=True, slots=True)
class Include:
    source_type: str
    param: str
    target_type: str | None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    descending: bool


@dataclass(slots=True)
class SearchRequest:
    resource_type: str
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    total: TotalMode = "accurate"
    summary_count: bool = False
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    # The accepted parameters (without paging), in order, to rebuild paging links.
    link_params: list[tuple[str, str]] = field(default_factory=list)


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$``."""
    values: list[str] = []
    current: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt in ",|$\\" else "\\" + nxt)
        elif ch == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(ch)
    values.append("".join(current))
    return values


def _bad(text: str, expression: str) -> BadRequest:
    return BadRequest(text, expression=expression)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- value conditions -------------------------------------------------------------------


def _token_value(table: Any, value: str) -> ColumnElement[bool]:
    if "|" in value:
        system, _, code = value.partition("|")
        parts: list[ColumnElement[bool]] = []
        parts.append(table.c.system == system if system else table.c.system.is_(None))
        if code:
            parts.append(table.c.code == code)
        return and_(*parts)
    return table.c.code == value  # type: ignore[no-any-return]


def _string_value(table: Any, modifier: str | None, value: str) -> ColumnElement[bool]:
    if modifier == "exact":
        return table.c.exact == value  # type: ignore[no-any-return]
    pattern = _like_escape(normalize(value))
    if modifier == "contains":
        return table.c.norm.like(f"%{pattern}%", escape="\\")  # type: ignore[no-any-return]
    return table.c.norm.like(f"{pattern}%", escape="\\")  # type: ignore[no-any-return]


def _date_value(table: Any, name: str, value: str) -> ColumnElement[bool]:
    prefix = "eq"
    if value[:2] in _DATE_PREFIXES:
        prefix, value = value[:2], value[2:]
    try:
        low, high = date_range(value)
    except ValueError as exc:
        raise _bad(f"'{name}' needs a FHIR date (YYYY, YYYY-MM-DD, dateTime)", name) from exc
    return date_condition(table.c.low, table.c.high, prefix, low, high)


def date_condition(
    t_low: Any, t_high: Any, prefix: str, low: datetime, high: datetime
) -> ColumnElement[bool]:
    """R4 date comparison of a target range [t_low, t_high) with a search range [low, high)."""
    contained = and_(t_low >= low, t_high <= high)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return t_high > high  # type: ignore[no-any-return]
    if prefix == "lt":
        return t_low < low  # type: ignore[no-any-return]
    if prefix == "ge":
        return or_(t_high > high, contained)
    if prefix == "le":
        return or_(t_low < low, contained)
    if prefix == "sa":
        return t_low >= high  # type: ignore[no-any-return]
    if prefix == "eb":
        return t_high <= low  # type: ignore[no-any-return]
    return and_(t_low < high, t_high > low)  # ap: overlaps


def _reference_value(
    table: Any, param: SearchParam, type_modifier: str | None, value: str, fhir_base: str
) -> ColumnElement[bool]:
    if value.startswith(fhir_base + "/"):
        value = value[len(fhir_base) + 1 :]
    target = split_reference(value)
    if target is None:
        if "/" in value or not value:
            raise _bad(f"'{param.name}' needs Type/id or an id", param.name)
        target_type = type_modifier or (param.targets[0] if len(param.targets) == 1 else None)
        cond = table.c.target_id == value
        return and_(cond, table.c.target_type == target_type) if target_type else cond
    if type_modifier and target[0] != type_modifier:
        return false()
    return and_(table.c.target_type == target[0], table.c.target_id == target[1])


# --- parameter conditions ----------------------------------------------------------------


class _Builder:
    def __init__(self, fhir_base: str) -> None:
        self.fhir_base = fhir_base

    def condition(self, rtype: str, row: Any, key: str, raw: str) -> ColumnElement[bool]:
        """The condition for one ``key=raw`` pair on resources of ``rtype`` (row alias)."""
        if key.startswith("_has:"):
            return self._has(rtype, row, key, raw)
        name, _, chain = key.partition(".")
        name, _, modifier = name.partition(":")
        if chain:
            return self._chain(rtype, row, name, modifier or None, chain, raw)
        if name == "_id":
            return self._row_token(row.c.id, modifier, raw, key)
        if name == "_lastUpdated":
            if modifier:
                raise _bad("_lastUpdated takes no modifier", key)
            return or_(*[self._last_updated(row, v) for v in split_values(raw)])
        param = params_for(rtype).get(name)
        if param is None:
            raise UnknownSearchParameter(
                f"unknown search parameter '{name}' for {rtype}", expression=key
            )
        return self._indexed(rtype, row, param, modifier or None, raw, key)

    def _row_token(self, column: Any, modifier: str, raw: str, key: str) -> ColumnElement[bool]:
        if modifier:
            raise _bad("_id takes no modifier", key)
        return column.in_(split_values(raw))  # type: ignore[no-any-return]

    def _last_updated(self, row: Any, value: str) -> ColumnElement[bool]:
        prefix = "eq"
        if value[:2] in _DATE_PREFIXES:
            prefix, value = value[:2], value[2:]
        try:
            low, high = date_range(value)
        except ValueError as exc:
            raise _bad("'_lastUpdated' needs a FHIR date or instant", "_lastUpdated") from exc
        # A stored lastUpdated is an instant with millisecond precision.
        return date_condition(
            row.c.last_updated,
            row.c.last_updated + _one_ms(),
            prefix,
            low,
            high,
        )

    def _indexed(
        self,
        rtype: str,
        row: Any,
        param: SearchParam,
        modifier: str | None,
        raw: str,
        key: str,
    ) -> ColumnElement[bool]:
        # A fresh alias per condition: nested chains must never correlate with each other.
        table = _TABLES[param.kind].alias()
        type_modifier: str | None = None
        if modifier and param.kind == "reference" and modifier[:1].isupper():
            if modifier not in SEARCH_PARAMS:
                raise _bad(f"unknown resource type in modifier ':{modifier}'", key)
            type_modifier, modifier = modifier, None
        if modifier and modifier not in _MODIFIERS[param.kind]:
            raise _bad(f"modifier ':{modifier}' is not supported on '{param.name}'", key)
        # Uncorrelated ``id IN (SELECT …)``: both SQLite and PostgreSQL run the index lookup
        # once instead of probing it for every candidate row.
        base = (table.c.type == rtype, table.c.param == param.name)
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise _bad(":missing takes true or false", key)
            present = select(table.c.id).where(*base)
            return row.c.id.not_in(present) if raw == "true" else row.c.id.in_(present)  # type: ignore[no-any-return]
        values = split_values(raw)
        if any(v == "" for v in values):
            raise _bad(f"'{param.name}' has an empty value", key)
        if param.kind in ("token", "uri"):
            cond = or_(*[_token_value(table, v) for v in values])
        elif param.kind == "string":
            cond = or_(*[_string_value(table, modifier, v) for v in values])
        elif param.kind == "date":
            cond = or_(*[_date_value(table, param.name, v) for v in values])
        else:
            cond = or_(
                *[_reference_value(table, param, type_modifier, v, self.fhir_base) for v in values]
            )
        matched = select(table.c.id).where(*base, cond)
        return row.c.id.not_in(matched) if modifier == "not" else row.c.id.in_(matched)  # type: ignore[no-any-return]

    def _chain(
        self,
        rtype: str,
        row: Any,
        name: str,
        type_modifier: str | None,
        chain: str,
        raw: str,
    ) -> ColumnElement[bool]:
        param = params_for(rtype).get(name)
        if param is None or param.kind != "reference":
            raise UnknownSearchParameter(
                f"'{name}' is not a reference parameter of {rtype}; it cannot be chained",
                expression=name,
            )
        if type_modifier is not None:
            if type_modifier not in SEARCH_PARAMS:
                raise _bad(f"unknown resource type '{type_modifier}'", f"{name}:{type_modifier}")
            target_types: tuple[str, ...] = (type_modifier,)
        elif param.targets:
            target_types = param.targets
        else:
            chained_name = chain.split(".")[0].split(":")[0]
            target_types = tuple(
                t for t, ps in SEARCH_PARAMS.items() if chained_name in ps or chained_name == "_id"
            )
        ref = idx_reference.alias()
        alternatives = []
        for target_type in target_types:
            target = resources.alias()
            inner = self.condition(target_type, target, chain, raw)
            ids = select(target.c.id).where(
                target.c.type == target_type, target.c.deleted == false(), inner
            )
            alternatives.append(and_(ref.c.target_type == target_type, ref.c.target_id.in_(ids)))
        referring = select(ref.c.id).where(
            ref.c.type == rtype,
            ref.c.param == name,
            or_(*alternatives) if alternatives else false(),
        )
        return row.c.id.in_(referring)  # type: ignore[no-any-return]

    def _has(self, rtype: str, row: Any, key: str, raw: str) -> ColumnElement[bool]:
        # _has:Observation:patient:code=1234  (possibly nested: _has:A:p:_has:B:q:x=…)
        parts = key.split(":", 3)
        if len(parts) < 4 or not parts[1] or not parts[2] or not parts[3]:
            raise _bad("_has needs _has:Type:reference-param:param=value", key)
        _, source_type, ref_param, rest = parts
        param = params_for(source_type).get(ref_param)
        if param is None or param.kind != "reference":
            raise UnknownSearchParameter(
                f"'{ref_param}' is not a reference parameter of {source_type}", expression=key
            )
        source = resources.alias()
        ref = idx_reference.alias()
        inner = self.condition(source_type, source, rest, raw)
        sources = select(source.c.id).where(
            source.c.type == source_type, source.c.deleted == false(), inner
        )
        targets = select(ref.c.target_id).where(
            ref.c.type == source_type,
            ref.c.param == ref_param,
            ref.c.target_type == rtype,
            ref.c.id.in_(sources),
        )
        return row.c.id.in_(targets)  # type: ignore[no-any-return]


def _one_ms() -> timedelta:
    return timedelta(milliseconds=1)


_TABLES: dict[str, Any] = {
    "token": idx_token,
    "uri": idx_token,
    "string": idx_string,
    "date": idx_date,
    "reference": idx_reference,
}

_INT_RE = re.compile(r"^\d{1,9}$")


def _int(key: str, raw: str) -> int:
    if not _INT_RE.match(raw):
        raise _bad(f"'{key}' needs a non-negative whole number", key)
    return int(raw)


def _parse_include(key: str, raw: str, resource_type: str, reverse: bool) -> Include:
    iterate = key.endswith(":iterate")
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise _bad(f"{key} needs Type:parameter[:TargetType]", key)
    source_type, param_name = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    param = params_for(source_type).get(param_name)
    if param is None or param.kind != "reference":
        raise _bad(f"'{raw}' does not name a reference parameter", key)
    if target is not None and target not in SEARCH_PARAMS:
        raise _bad(f"unknown resource type '{target}'", key)
    if not reverse and not iterate and source_type != resource_type:
        raise _bad(f"_include must start with {resource_type} (or use :iterate)", key)
    return Include(source_type, param_name, target, iterate)


def _parse_sort(resource_type: str, raw: str) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in raw.split(","):
        descending = item.startswith("-")
        name = item[1:] if descending else item
        if name not in ("_id", "_lastUpdated"):
            param = params_for(resource_type).get(name)
            if param is None or param.kind == "reference":
                raise _bad(f"cannot sort {resource_type} by '{name}'", "_sort")
        keys.append(SortKey(name, descending))
    return keys


def parse_search(
    resource_type: str,
    items: list[tuple[str, str]],
    *,
    fhir_base: str,
    lenient: bool = False,
    default_count: int = 50,
    max_count: int = 500,
    row: Any = resources,
    limits: SearchLimits | None = None,
) -> SearchRequest:
    """Read the query into a SearchRequest; raises BadRequest/UnknownSearchParameter, and
    ``LimitExceeded`` (400) for a query beyond the search limits."""
    check_limits(items, limits or SearchLimits())
    request = SearchRequest(resource_type, count=default_count)
    builder = _Builder(fhir_base)
    for key, raw in items:
        base_key = key.split(":")[0]
        if base_key in RESULT_PARAMS:
            _apply_result_param(request, key, raw, max_count)
            continue
        try:
            request.conditions.append(builder.condition(resource_type, row, key, raw))
        except UnknownSearchParameter as exc:
            if not lenient:
                raise
            request.warnings.append(
                Issue("not-supported", str(exc), expression=key, severity="warning")
            )
            continue
        request.link_params.append((key, raw))
    return request


_NOT_CRITERIA = frozenset({"_count", "_offset", "_format", "_pretty", "_total", "_summary"})


def check_limits(items: list[tuple[str, str]], limits: SearchLimits) -> None:
    """The search limits, checked before any condition is built (each names its setting).

    Beyond them a query would be refused by the database (SQLite's expression depth) or
    cost everyone else: the client's own doing, a 400 — never "store unavailable".
    """
    criteria = [(k, v) for k, v in items if k.split(":")[0] not in _NOT_CRITERIA]
    if len(criteria) > limits.max_parameters:
        raise exceeded("search_max_parameters", limits.max_parameters, "too many search parameters")
    includes = 0
    for key, raw in criteria:
        base_key = key.split(":")[0]
        if base_key in ("_include", "_revinclude"):
            includes += 1
            if includes > limits.max_includes:
                raise exceeded(
                    "search_max_includes",
                    limits.max_includes,
                    "too many _include and _revinclude parameters",
                    key,
                )
            continue
        # a.b.c chains and _has:T:p:_has:… both nest one query in another per level.
        depth = key.count(".") + key.count("_has:")
        if depth > limits.max_chain_depth:
            raise exceeded(
                "search_max_chain_depth", limits.max_chain_depth, "the chain is too deep", key
            )
        if raw.count(",") >= limits.max_or_values and len(split_values(raw)) > (
            limits.max_or_values
        ):
            raise exceeded(
                "search_max_or_values",
                limits.max_or_values,
                "too many values in one search parameter",
                key,
            )


def _apply_result_param(request: SearchRequest, key: str, raw: str, max_count: int) -> None:
    base_key = key.split(":")[0]
    keep = True
    if base_key == "_count":
        request.count = min(_int(key, raw), max_count)
    elif base_key == "_offset":
        request.offset = _int(key, raw)
        keep = False
    elif base_key == "_sort":
        request.sort = _parse_sort(request.resource_type, raw)
    elif base_key == "_include":
        request.includes.append(_parse_include(key, raw, request.resource_type, False))
    elif base_key == "_revinclude":
        request.revincludes.append(_parse_include(key, raw, request.resource_type, True))
    elif base_key == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise _bad("_total is none, estimate or accurate", key)
        request.total = raw  # type: ignore[assignment]
    elif base_key == "_summary":
        if raw == "count":
            request.summary_count = True
        elif raw != "false":
            raise _bad("_summary supports count and false", key)
    elif base_key == "_format":
        if raw not in ("json", "application/json", "application/fhir+json"):
            raise BadRequest("only JSON is served", expression=key)
        keep = False
    elif base_key == "_elements":
        raise UnknownSearchParameter("_elements is not supported", expression=key)
    else:  # _pretty
        keep = False
    if keep:
        request.link_params.append((key, raw))


__all__ = [
    "Include",
    "SearchRequest",
    "SortKey",
    "check_limits",
    "date_condition",
    "parse_search",
    "split_values",
]
