"""Early warning at the first follow-up: who risks a long absence, and why (pure).

DOMAIN.md, "Coordination": spot at the first contact who risks long absence — earlier
sick-leave episodes ("gengangere"), fear-avoidance and return-to-work self-efficacy scores,
the case category — as a flag with its reasons, never an automatic decision. A RiskAssessment
(``status`` preliminary) for the caseworker: it carries the sickness-benefit-case label only,
so an employer never sees it (not employment-relevant) and the health side only under the
citizen's consent; mental-health reasons add the mental-health label.

The cut-offs for the two scores are not in DOMAIN.md: half of each scale (fear-avoidance 15 of
0-30, higher is worse; RTW self-efficacy 5 of 0-10, lower is worse) until the municipality
sets its own; they are here, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from mappings._codes import code_system
from mappings.deadlines import PaidPeriod

RISK_SYSTEM = code_system("early-warning")
REASON_SYSTEM = code_system("early-warning-reason")
PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
LOOK_BACK_DAYS = 2 * 365  # "earlier sick-leave periods within the last two years"
FEAR_AVOIDANCE_CUT_OFF = Decimal(15)
RTW_SELF_EFFICACY_CUT_OFF = Decimal(5)
REASONS: dict[str, str] = {
    "earlier-sick-leave": "Tidligere sygefravær inden for de seneste to år",
    "category-3": "Kategori 3: langvarigt og komplekst sygdomsforløb",
    "mental-health": "Psykisk lidelse (eller kombineret)",
    "fear-avoidance": "Høj frygt-undgåelse (ÖMPQ)",
    "rtw-self-efficacy": "Lav tiltro til at vende tilbage til arbejdet",
}
SCORE_REASONS = frozenset({"fear-avoidance", "rtw-self-efficacy"})
NOT_A_DECISION = "Et signal til sagsbehandleren med sine grunde; aldrig en automatisk afgørelse."


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    detail: str


def earlier_periods(first_day: date, payments: tuple[PaidPeriod, ...] | None) -> list[PaidPeriod]:
    """Paid sick-leave periods that ended before this absence, within the last two years."""
    if not payments:
        return []
    since = first_day - timedelta(days=LOOK_BACK_DAYS)
    return [
        p
        for p in payments
        if p.art != "barsel" and p.end is not None and since <= p.end < first_day
    ]


def early_warning_reasons(
    *,
    first_day: date,
    payments: tuple[PaidPeriod, ...] | None,
    category: str | None,
    mental_health: bool,
    scores: Mapping[str, Decimal] | None = None,
) -> list[Reason]:
    """The reasons that apply; ``scores`` (current values by scale code) when the caseworker
    has them."""
    reasons: list[Reason] = []
    earlier = earlier_periods(first_day, payments)
    if earlier:
        spans = ", ".join(f"{p.start.isoformat()}/{p.end.isoformat()}" for p in earlier if p.end)
        reasons.append(Reason("earlier-sick-leave", f"{len(earlier)} periode(r): {spans}"))
    if category == "3":
        reasons.append(Reason("category-3", REASONS["category-3"]))
    if mental_health:
        reasons.append(Reason("mental-health", REASONS["mental-health"]))
    scores = scores or {}
    fear = scores.get("fear-avoidance")
    if fear is not None and fear >= FEAR_AVOIDANCE_CUT_OFF:
        reasons.append(
            Reason("fear-avoidance", f"ÖMPQ frygt-undgåelse {fear} (≥ {FEAR_AVOIDANCE_CUT_OFF})")
        )
    rtw = scores.get("rtw-self-efficacy")
    if rtw is not None and rtw <= RTW_SELF_EFFICACY_CUT_OFF:
        reasons.append(
            Reason("rtw-self-efficacy", f"RTW self-efficacy {rtw} (≤ {RTW_SELF_EFFICACY_CUT_OFF})")
        )
    return reasons


def probability(reasons: list[Reason]) -> str:
    return "high" if len(reasons) >= 2 else "moderate" if reasons else "low"


def with_scores(warning: dict[str, Any], scores: Mapping[str, Decimal]) -> dict[str, Any]:
    """The early warning with the score reasons ``scores`` give (current values by scale code,
    as the caseworker may see them), its level recomputed; the input is left alone."""
    added = early_warning_reasons(
        first_day=date.min, payments=None, category=None, mental_health=False, scores=scores
    )
    if not added:
        return warning
    out = dict(warning)
    codes = [
        c
        for c in out.get("reasonCode", [])
        if not any(x.get("code") in SCORE_REASONS for x in c.get("coding", []))
    ]
    codes += [
        {
            "coding": [{"system": REASON_SYSTEM, "code": r.code, "display": REASONS[r.code]}],
            "text": r.detail,
        }
        for r in added
    ]
    out["reasonCode"] = codes
    level = probability([Reason("", "")] * len(codes))
    out["extension"] = [
        {**e, "valueCodeableConcept": {"coding": [{"system": PROBABILITY_SYSTEM, "code": level}]}}
        if e.get("url", "").endswith("/early-warning-level")
        else e
        for e in out.get("extension", [])
    ]
    return out
