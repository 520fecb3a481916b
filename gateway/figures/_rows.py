"""Stored resources → the plain facts the key figures count (the only I/O of the figures).

Why this reads the store without a per-citizen consent decision, and why that is lawful:
DOMAIN.md, "Managers' key figures" — *aggregates only, with small cells suppressed, so no
per-citizen consent is needed and no citizen can be singled out*. The rows read here never
leave this process: ``_compute`` reduces them to counts, medians and rates, and suppresses
every cell under five citizens (and the complementary cells that would undo that) before
anything is returned. No resource, id, date or free text reaches a caller. A route that wants
a citizen's data still goes through ``gateway.data.DataPath``; this module is the one
exception and is listed as such in ``tests/architecture/test_guarded_path_layers.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from gateway.figures._compute import Course, Deadline, Episode, Facts, Plan, ScoreChange
from gateway.store.repository import Store
from gateway.store.schema import resources
from mappings.coordination import REFERRAL_CATEGORY_SYSTEM, REHAB_REFERRAL
from mappings.deadlines import DEADLINE_STATUS_SYSTEM, DEADLINE_SYSTEM

EPISODE_TYPE = "sickness-benefit-case"
GRADUAL_RETURN = "gradual-return-to-work"
BASELINE = "score-at-start"
_TYPES = ("ServiceRequest", "Task", "EpisodeOfCare", "CarePlan", "Observation")


def _day(value: object) -> date | None:
    text = str(value or "")[:10]
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _ref(value: object) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def _refs(*values: object) -> frozenset[str]:
    found: set[str] = set()
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            ref = _ref(item)
            if ref is not None and ref.startswith("Organization/"):
                found.add(ref)
    return frozenset(found)


def _codes(concepts: object) -> set[tuple[str, str]]:
    items = concepts if isinstance(concepts, list) else [concepts]
    found = set()
    for concept in items:
        if isinstance(concept, dict):
            for coding in concept.get("coding") or []:
                if isinstance(coding, dict):
                    found.add((str(coding.get("system", "")), str(coding.get("code", ""))))
    return found


def _has_code(concepts: object, code: str) -> bool:
    return any(c == code for _, c in _codes(concepts))


def _quantity(value: object) -> Decimal | None:
    if not isinstance(value, dict) or "value" not in value:
        return None
    try:
        return Decimal(str(value["value"]))
    except InvalidOperation:
        return None


def facts_from(resources_: Iterable[dict[str, Any]]) -> Facts:
    """Pure: the facts in a set of stored resources (exposed for tests)."""
    by_ref: dict[str, dict[str, Any]] = {}
    items = list(resources_)
    for r in items:
        by_ref[f"{r.get('resourceType')}/{r.get('id')}"] = r
    courses, plans, cases, returns, deadlines, scores = [], [], [], [], [], []
    for r in items:
        kind = r.get("resourceType")
        if kind == "ServiceRequest":
            citizen, authored = _ref(r.get("subject")), _day(r.get("authoredOn"))
            if citizen is None or authored is None:
                continue
            referral = (REFERRAL_CATEGORY_SYSTEM, REHAB_REFERRAL) in _codes(r.get("category"))
            if r.get("intent") == "plan" or referral:
                plans.append(Plan(citizen, _refs(r.get("performer"), r.get("requester")), authored))
        elif kind == "Task":
            citizen = _ref(r.get("for"))
            if citizen is None:
                continue
            codes = _codes(r.get("code"))
            deadline = next((c for s, c in codes if s == DEADLINE_SYSTEM), None)
            due = _day(((r.get("restriction") or {}).get("period") or {}).get("end"))
            if deadline is not None and due is not None:
                state = next(
                    (c for s, c in _codes(r.get("businessStatus")) if s == DEADLINE_STATUS_SYSTEM),
                    None,
                )
                deadlines.append(Deadline(citizen, _refs(r.get("owner")), deadline, due, state))
            started = _day((r.get("executionPeriod") or {}).get("start"))
            focus = by_ref.get(_ref(r.get("focus")) or "")
            if (
                started is not None
                and focus is not None
                and focus.get("resourceType") == ("ServiceRequest")
            ):
                received = _day(focus.get("authoredOn"))
                if received is not None:
                    orgs = _refs(r.get("owner"), r.get("requester"))
                    courses.append(Course(citizen, orgs, received, started))
        elif kind == "EpisodeOfCare" and _has_code(r.get("type"), EPISODE_TYPE):
            citizen = _ref(r.get("patient"))
            start = _day((r.get("period") or {}).get("start"))
            if citizen and start:
                end = _day((r.get("period") or {}).get("end"))
                cases.append(Episode(citizen, _refs(r.get("managingOrganization")), start, end))
        elif kind == "CarePlan" and _has_code(r.get("category"), GRADUAL_RETURN):
            citizen = _ref(r.get("subject"))
            start = _day((r.get("period") or {}).get("start"))
            if citizen and start:
                end = _day((r.get("period") or {}).get("end"))
                returns.append(Episode(citizen, _refs(r.get("author")), start, end))
        elif kind == "Observation":
            baseline = next(
                (c for c in r.get("component") or [] if _has_code(c.get("code"), BASELINE)), None
            )
            citizen, day = _ref(r.get("subject")), _day(r.get("effectiveDateTime"))
            if baseline is None or citizen is None or day is None:
                continue
            first = _quantity(baseline.get("valueQuantity"))
            latest = _quantity(r.get("valueQuantity"))
            instrument = next(iter(sorted(c for _, c in _codes(r.get("code")))), None)
            if first is not None and latest is not None and instrument:
                scores.append(
                    ScoreChange(citizen, _refs(r.get("performer")), instrument, day, first, latest)
                )
    return Facts(
        tuple(courses), tuple(plans), tuple(cases), tuple(returns), tuple(deadlines), tuple(scores)
    )


async def load_facts(store: Store) -> Facts:
    """Every current resource the figures count, reduced to facts (never returned as rows)."""
    query = select(resources.c.content).where(
        resources.c.type.in_(_TYPES), resources.c.deleted.is_(False)
    )
    async with store.read_connection() as conn:
        rows = (await conn.execute(query)).all()
    return facts_from(json.loads(row[0]) for row in rows if row[0])
