"""Searches that join into other resource types, resolved through the consent gate.

``_has`` and chains into resource types that need consent would let a caller learn about
resources it may not see (``Patient?_has:Condition:patient:code=DF32``). They are resolved in
two steps instead: the inner search runs through the consent gate, and the outer search gets
the visible ids only.
"""

from __future__ import annotations

from typing import Any

from consent import DIRECTORY_TYPES
from gateway.access import ConsentGate
from gateway.auth.principal import Principal
from gateway.search.indexing import index_resource
from gateway.search.parameters import SEARCH_PARAMS, params_for
from gateway.store.repository import Store

# Patient is not safe: a chain on Patient.name would read a Patient the caller may not see.
_SAFE_JOIN_TYPES = frozenset(DIRECTORY_TYPES)
_NO_MATCH = "~none~"
_INNER_LIMIT = 5000


async def resolve_guarded_joins(
    store: Store, principal: Principal, rtype: str, items: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Replace leaking ``_has``/chain parameters with the visible ids they stand for."""
    out: list[tuple[str, str]] = []
    for key, raw in items:
        if key.startswith("_has:"):
            out.append(("_id", await _resolve_has(store, principal, rtype, key, raw)))
            continue
        name, dot, chain = key.partition(".")
        if not dot or name.startswith("_"):
            out.append((key, raw))
            continue
        base, _, type_modifier = name.partition(":")
        param = params_for(rtype).get(base)
        if param is None or param.kind != "reference":
            out.append((key, raw))  # the parser reports it
            continue
        targets = (
            (type_modifier,)
            if type_modifier
            else param.targets
            or tuple(t for t in SEARCH_PARAMS if chain.split(".")[0] in SEARCH_PARAMS[t])
        )
        if all(t in _SAFE_JOIN_TYPES for t in targets):
            out.append((key, raw))
            continue
        references: list[str] = []
        for target in targets:
            ids = await _visible_ids(store, principal, target, [(chain, raw)])
            references += [f"{target}/{i}" for i in ids]
        if references:
            out.append((base, ",".join(references)))
        else:
            out.append(("_id", _NO_MATCH))
    return out


async def _resolve_has(store: Store, principal: Principal, rtype: str, key: str, raw: str) -> str:
    parts = key.split(":", 3)
    if len(parts) < 4:
        return _NO_MATCH  # unreachable for valid input; the parser reports malformed _has
    _, source_type, ref_param, rest = parts
    if source_type not in SEARCH_PARAMS:
        return _NO_MATCH
    sources = await _visible_resources(store, principal, source_type, [(rest, raw)])
    targets: set[str] = set()
    for source in sources:
        for row in index_resource(source).reference:
            if row["param"] == ref_param and row["target_type"] == rtype:
                targets.add(row["target_id"])
    return ",".join(sorted(targets)) or _NO_MATCH


async def _visible_resources(
    store: Store, principal: Principal, rtype: str, items: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    items = await resolve_guarded_joins(store, principal, rtype, items)
    request = store.parse(rtype, [*items, ("_total", "none")], max_count=_INNER_LIMIT)
    request.count = _INNER_LIMIT
    gate = ConsentGate(store, principal, interaction="search-type", audit=False)
    result = await store.search(request, visibility=gate)
    return result.matches


async def _visible_ids(
    store: Store, principal: Principal, rtype: str, items: list[tuple[str, str]]
) -> list[str]:
    return [str(r["id"]) for r in await _visible_resources(store, principal, rtype, items)]
