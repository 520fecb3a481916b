"""The early warning's score reasons: the scores the caseworker may see, when a case is stored.

The adapter builds the early warning from the case export alone (``mappings.coordination``).
Fear-avoidance and RTW self-efficacy scores come from the rehabilitation unit; the job centre
may see them only under the citizen's consent. So, when a job centre stores its case through
its own guarded path, the scores are read through that path (hidden ones are absent) — the
latest of each measured on or before the first follow-up — and added as reasons. The
operator's import (no consent decision) adds none: it would put health data into the job
centre's record that the job centre could not read.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.data.writer import GuardedWriter
from mappings.coordination import RISK_SYSTEM, with_scores

OBSERVATION_CODE_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/observation-code"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
SCORE_CODES = ("fear-avoidance", "rtw-self-efficacy")


def _is_warning(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "RiskAssessment" and any(
        c.get("system") == RISK_SYSTEM for c in (resource.get("code") or {}).get("coding", [])
    )


async def _scores(writer: GuardedWriter, cpr: str, until: str) -> dict[str, Decimal]:
    patients = await writer.find("Patient", f"identifier={CPR_SYSTEM}|{cpr}")
    found: dict[str, tuple[str, Decimal]] = {}
    for patient in patients:
        for code in SCORE_CODES:
            criteria = f"patient=Patient/{patient['id']}&code={OBSERVATION_CODE_SYSTEM}|{code}"
            for observation in await writer.find("Observation", criteria, limit=100):
                when = str(observation.get("effectiveDateTime", ""))[:10]
                value = (observation.get("valueQuantity") or {}).get("value")
                if not when or when > until or value is None:
                    continue
                try:
                    number = Decimal(str(value))
                except InvalidOperation:
                    continue
                if code not in found or when > found[code][0]:
                    found[code] = (when, number)
    return {code: value for code, (_, value) in found.items()}


async def add_score_reasons(writer: GuardedWriter, bundle: dict[str, Any]) -> dict[str, Any]:
    """``bundle`` with its early warning's score reasons, as the writer may see the scores."""
    if not writer.enforce or writer.principal.kind != "jobcentre":
        return bundle
    entries = bundle.get("entry", [])
    warnings = [e for e in entries if _is_warning(e.get("resource") or {})]
    cprs = [
        i.get("value")
        for e in entries
        if (e.get("resource") or {}).get("resourceType") == "Patient"
        for i in e["resource"].get("identifier", [])
        if i.get("system") == CPR_SYSTEM
    ]
    if not warnings or len(cprs) != 1:
        return bundle
    out_entries = []
    for entry in entries:
        resource = entry.get("resource") or {}
        if _is_warning(resource):
            until = str(resource.get("occurrenceDateTime", ""))[:10]
            scores = await _scores(writer, str(cprs[0]), until)
            entry = {**entry, "resource": with_scores(resource, scores)} if scores else entry
        out_entries.append(entry)
    return {**bundle, "entry": out_entries}
