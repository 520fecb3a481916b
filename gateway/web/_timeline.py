"""A citizen's timeline from what the viewer's guarded data path returned (pure).

Input: the resources the viewer may see and the consent gate's decision for each; output:
dated items in Danish, each naming the rule or Consent that let this viewer see it. Nothing
is added about resources the viewer may not see: the timeline is built only from what the
guarded path returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from consent import Decision

LEGAL_BASIS_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/legal-basis"
HIDDEN_KINDS = frozenset({"Patient", "Provenance", "AuditEvent", "Binary"})

RULES_DA: dict[str, str] = {
    "author": "I har selv skrevet oplysningen",
    "directory": "Fælles katalogoplysning (organisation, person, skema)",
    "consent": "Borgerens samtykke",
    "legal-basis": "Lovhjemmel uden samtykke",
    "task-owner": "Opgaven er stillet til jer",
    "citizen-access": "Borgerens egen adgang",
}


@dataclass(frozen=True, slots=True)
class Score:
    start: float
    now: float
    low: float
    high: float
    better: bool | None


@dataclass(slots=True)
class Item:
    ref: str
    day: str
    kind: str
    title: str
    details: list[str] = field(default_factory=list)
    basis: str = ""
    basis_detail: str = ""
    score: Score | None = None


def _text(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict):
            return str(coding.get("display") or coding.get("code") or "")
    return ""


def _codes(concept: object) -> set[str]:
    items = concept if isinstance(concept, list) else [concept]
    return {
        str(c.get("code"))
        for i in items
        if isinstance(i, dict)
        for c in i.get("coding") or []
        if isinstance(c, dict)
    }


def _day(resource: dict[str, Any]) -> str:
    candidates = [
        resource.get("authoredOn"),
        resource.get("effectiveDateTime"),
        (resource.get("executionPeriod") or {}).get("start"),
        (resource.get("period") or {}).get("start"),
        resource.get("sent"),
        resource.get("authored"),
        resource.get("date"),
        resource.get("dateTime"),
        resource.get("occurrenceDateTime"),
        resource.get("recordedDate"),
        ((resource.get("restriction") or {}).get("period") or {}).get("end"),
        (resource.get("meta") or {}).get("lastUpdated"),
    ]
    return next((str(c)[:10] for c in candidates if c), "")


def _number(value: object) -> float | None:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def _score(resource: dict[str, Any]) -> Score | None:
    start = next(
        (
            c.get("valueQuantity", {}).get("value")
            for c in resource.get("component") or []
            if "score-at-start" in _codes(c.get("code"))
        ),
        None,
    )
    now = (resource.get("valueQuantity") or {}).get("value")
    ranges = (resource.get("referenceRange") or [{}])[0]
    low = (ranges.get("low") or {}).get("value", 0)
    high = (ranges.get("high") or {}).get("value")
    values = [_number(v) for v in (start, now, low, high)]
    if any(v is None for v in values):
        return None
    flags = _codes(resource.get("interpretation"))
    better = True if "B" in flags else False if "W" in flags else None
    s, n, lo, hi = (float(v) for v in values if v is not None)
    return Score(s, n, lo, hi, better)


def _describe(resource: dict[str, Any]) -> tuple[str, str, list[str]]:
    kind = str(resource.get("resourceType"))
    details: list[str] = []
    if kind == "ServiceRequest":
        if resource.get("intent") == "plan":
            title = _text(resource.get("code")) or "Genoptræningsplan"
            return "Genoptræningsplan", title, [f"Status: {resource.get('status', '')}"]
        return "Henvisning", _text(resource.get("code")) or "Henvisning til genoptræning", details
    if kind == "Task":
        due = ((resource.get("restriction") or {}).get("period") or {}).get("end")
        if due:
            details.append(f"Frist: {str(due)[:10]}")
        details.append(f"Status: {resource.get('status', '')}")
        state = _text(resource.get("businessStatus"))
        if state:
            details.append(f"Fristens stand: {state}")
        started = (resource.get("executionPeriod") or {}).get("start")
        if started:
            details.append(f"Træning startet: {str(started)[:10]}")
        return "Opgave", str(resource.get("description") or _text(resource.get("code"))), details
    if kind == "Communication":
        return "Notat", _text((resource.get("category") or [{}])[0]) or "Notat", details
    if kind == "QuestionnaireResponse":
        return "Notat (skema)", str(resource.get("questionnaire", "")).rsplit("/", 1)[-1], details
    if kind == "Observation":
        value = resource.get("valueQuantity") or {}
        if value:
            details.append(f"Værdi: {value.get('value')} {value.get('unit', '')}".strip())
        elif "valueString" in resource:
            details.append(str(resource["valueString"])[:500])
        label = "Testscore" if _score(resource) else "Måling"
        return label, _text(resource.get("code")), details
    if kind == "EpisodeOfCare":
        period = resource.get("period") or {}
        details.append(f"Periode: {period.get('start', '')} - {period.get('end', '')}")
        return "Sygedagpengesag", _text((resource.get("type") or [{}])[0]), details
    if kind == "Encounter":
        title = _text((resource.get("type") or [{}])[0]) or _text(resource.get("class"))
        label = "Rundbordssamtale" if "rundbord" in _codes(resource.get("type")) else "Samtale"
        return label, title or label, details
    if kind == "CarePlan":
        for activity in resource.get("activity") or []:
            detail = activity.get("detail") or {}
            hours = (detail.get("quantity") or {}).get("value")
            bounds = ((detail.get("scheduledTiming") or {}).get("repeat") or {}).get(
                "boundsPeriod"
            ) or {}
            step = f"{bounds.get('start', '')} - {bounds.get('end', '')}".strip(" -")
            if hours is not None:
                details.append(f"Trin {step}: {hours} timer/uge".replace("Trin :", "Trin:"))
        category = _codes(resource.get("category"))
        label = "Delvis raskmelding" if "gradual-return-to-work" in category else "Fælles plan"
        return (
            label,
            str(resource.get("title") or _text((resource.get("category") or [{}])[0])),
            details,
        )
    if kind in ("Composition", "DocumentReference"):
        return "Dokument", str(resource.get("title") or _text(resource.get("type"))), details
    if kind == "RiskAssessment":
        return "Tidlig opsporing", _text(resource.get("code")), details
    if kind == "Appointment":
        return "Rundbordssamtale", str(resource.get("description") or ""), details
    if kind == "Condition":
        return "Diagnose", _text(resource.get("code")), details
    if kind == "Consent":
        return "Samtykke", "Samtykke registreret", [f"Status: {resource.get('status', '')}"]
    return kind, _text(resource.get("code")), details


def basis_of(resource: dict[str, Any], decision: Decision) -> tuple[str, str]:
    """Why this viewer sees it: the rule in Danish, and the Consent or legal basis behind it."""
    text = RULES_DA.get(decision.rule, decision.rule)
    detail = decision.consent or ""
    for tag in (resource.get("meta") or {}).get("tag") or []:
        if isinstance(tag, dict) and tag.get("system") == LEGAL_BASIS_SYSTEM:
            detail = f"{detail} lovhjemmel: {tag.get('display') or tag.get('code')}".strip()
    return f"{text} [{decision.rule}]", detail


def timeline(resources: list[dict[str, Any]], decisions: list[Decision]) -> list[Item]:
    items = []
    for resource, decision in zip(resources, decisions, strict=True):
        if not decision.permitted or resource.get("resourceType") in HIDDEN_KINDS:
            continue
        kind, title, details = _describe(resource)
        basis, detail = basis_of(resource, decision)
        items.append(
            Item(
                ref=f"{resource.get('resourceType')}/{resource.get('id')}",
                day=_day(resource),
                kind=kind,
                title=title or kind,
                details=details,
                basis=basis,
                basis_detail=detail,
                score=_score(resource) if resource.get("resourceType") == "Observation" else None,
            )
        )
    items.sort(key=lambda i: (i.day, i.kind, i.ref))
    return items
