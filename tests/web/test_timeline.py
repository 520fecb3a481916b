"""The timeline builder (pure): only permitted items, each with its basis, scores and steps."""

from __future__ import annotations

from consent import Decision
from gateway.web._timeline import timeline
from mappings.coordination import Score, score_observation

PLAN = {
    "resourceType": "ServiceRequest",
    "id": "plan",
    "intent": "plan",
    "status": "active",
    "authoredOn": "2026-10-02",
    "code": {"text": "Genoptræningsplan"},
}
HIDDEN = {"resourceType": "Condition", "id": "secret", "recordedDate": "2026-10-01"}
GRADUAL = {
    "resourceType": "CarePlan",
    "id": "gradual",
    "category": [{"coding": [{"code": "gradual-return-to-work"}]}],
    "period": {"start": "2026-11-02"},
    "activity": [
        {
            "detail": {
                "quantity": {"value": 15},
                "scheduledTiming": {
                    "repeat": {"boundsPeriod": {"start": "2026-11-02", "end": "2026-11-29"}}
                },
            }
        }
    ],
}
SHARED = {"resourceType": "CarePlan", "id": "shared", "title": "Fælles plan for Ole"}
ROUND_TABLE = {
    "resourceType": "Encounter",
    "id": "rt",
    "type": [{"coding": [{"code": "rundbord", "display": "Rundbordssamtale"}]}],
    "period": {"start": "2026-11-20"},
}
PERMIT_CONSENT = Decision("permit", "consent", "consented", consent="Consent/c1")
PERMIT_AUTHOR = Decision("permit", "author", "wrote it")
DENY = Decision("deny", "no-consent", "no consent")


def test_only_permitted_items_with_their_basis_scores_and_steps() -> None:
    from datetime import date
    from decimal import Decimal

    score = score_observation(
        Score("oswestry-odi", Decimal(42), Decimal(28)),
        patient="Patient/ole",
        performer="Organization/org-aarhus-genoptraening",
        effective=date(2027, 1, 8),
    )
    score["id"] = "odi"
    items = timeline(
        [PLAN, HIDDEN, GRADUAL, SHARED, ROUND_TABLE, score],
        [PERMIT_CONSENT, DENY, PERMIT_AUTHOR, PERMIT_AUTHOR, PERMIT_AUTHOR, PERMIT_CONSENT],
    )
    refs = [i.ref for i in items]
    assert "Condition/secret" not in refs and len(items) == 5
    plan = next(i for i in items if i.ref == "ServiceRequest/plan")
    assert plan.kind == "Genoptræningsplan" and plan.basis_detail == "Consent/c1"
    assert "[consent]" in plan.basis
    gradual = next(i for i in items if i.ref == "CarePlan/gradual")
    assert gradual.kind == "Delvis raskmelding"
    assert gradual.details == ["Trin 2026-11-02 - 2026-11-29: 15 timer/uge"]
    assert next(i for i in items if i.ref == "CarePlan/shared").kind == "Fælles plan"
    assert next(i for i in items if i.ref == "Encounter/rt").kind == "Rundbordssamtale"
    odi = next(i for i in items if i.ref == "Observation/odi")
    assert odi.score is not None
    assert (odi.score.start, odi.score.now, odi.score.low, odi.score.high) == (42, 28, 0, 100)
    assert odi.score.better is True  # Oswestry: lower is better
    assert [i.day for i in items] == sorted(i.day for i in items)
