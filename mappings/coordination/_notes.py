"""The rehabilitation unit's status note (6 weeks) and final note, as FHIR (pure).

DOMAIN.md, "Coordination": each holds the citizen's own assessment and the therapist's
assessment as separate parts, attendance, the test scores at start and now, and the expected
end. A note is a collection Bundle for ``brobygger send`` (MedCom's CareCommunication with
category ``training``, so the event is ``care-communication-message``):

- the Communication answers its deadline Task (``basedOn``) and carries the rest;
- a QuestionnaireResponse to ``Questionnaire/REHAB-STATUS`` or ``REHAB-FINAL``
  (``profiles/questionnaires``): the two assessments, attendance, the expected end or the end;
- one Observation per scale: the score now (``valueQuantity``), the score at the start
  (component ``score-at-start``), the scale's range and direction (``referenceRange``) and
  whether it got better or worse (``interpretation`` B/W).

Everything is labelled ``rehab-progress``: it reaches the job centre only under the
citizen's consent, and an employer never.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from mappings._codes import DATA_CATEGORY_SYSTEM, REHAB_PROGRESS, security
from mappings._values import fhir_decimal
from mappings.coordination._scales import (
    BASELINE,
    INTERPRETATION_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    SCALES,
    UCUM_SYSTEM,
)

QUESTIONNAIRE_BASE = "http://brobygger.dk/fhir/Questionnaire"
QUESTIONNAIRE_VERSION = "0.1.0"
STATUS_NOTE = "REHAB-STATUS"
FINAL_NOTE = "REHAB-FINAL"
CARE_COMMUNICATION_CATEGORY = (
    "http://medcomfhir.dk/ig/terminology/CodeSystem/medcom-careCommunication-categoryCodes"
)
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
_TOPICS = {
    STATUS_NOTE: "Statusnotat efter 6 ugers genoptræning",
    FINAL_NOTE: "Afsluttende notat fra genoptræningen",
}


@dataclass(frozen=True, slots=True)
class Score:
    code: str  # a key of SCALES
    start: Decimal
    now: Decimal


def _urn(n: int) -> str:
    return f"urn:uuid:7a1e0c3b-0000-4000-8000-{n:012d}"


def interpretation(code: str, start: Decimal, now: Decimal) -> str | None:
    """``B`` (better) or ``W`` (worse) by the scale's direction; None when unchanged."""
    if now == start:
        return None
    return "B" if (now > start) == SCALES[code].higher_is_better else "W"


def score_observation(
    score: Score, *, patient: str, performer: str, effective: date
) -> dict[str, Any]:
    scale = SCALES.get(score.code)
    if scale is None:
        raise ValueError(f"unknown scale {score.code!r}")
    for value in (score.start, score.now):
        if not scale.contains(value):
            raise ValueError(f"{score.code} must be within {scale.low}-{scale.high}")
    unit = {"unit": scale.unit, "system": UCUM_SYSTEM, "code": scale.ucum}
    direction = "højere er bedre" if scale.higher_is_better else "lavere er bedre"
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"security": security(REHAB_PROGRESS)},
        "status": "final",
        "code": {
            "coding": [
                {"system": OBSERVATION_CODE_SYSTEM, "code": scale.code, "display": scale.display}
            ]
        },
        "subject": {"reference": patient},
        "effectiveDateTime": effective.isoformat(),
        "performer": [{"reference": performer}],
        "valueQuantity": {"value": fhir_decimal(score.now), **unit},
        "referenceRange": [
            {
                "low": {"value": fhir_decimal(scale.low), **unit},
                "high": {"value": fhir_decimal(scale.high), **unit},
                "text": f"{scale.low}-{scale.high} {scale.unit}, {direction} ({scale.direction})",
            }
        ],
        "component": [
            {
                "code": {"coding": [{"system": OBSERVATION_CODE_SYSTEM, "code": BASELINE}]},
                "valueQuantity": {"value": fhir_decimal(score.start), **unit},
            }
        ],
    }
    flag = interpretation(score.code, score.start, score.now)
    if flag is not None:
        observation["interpretation"] = [
            {
                "coding": [
                    {
                        "system": INTERPRETATION_SYSTEM,
                        "code": flag,
                        "display": "Better" if flag == "B" else "Worse",
                    }
                ]
            }
        ]
    return observation


def _answer(link_id: str, text: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "text": text, "answer": [value]}


def note_bundle(
    kind: str,
    *,
    task: str,
    cpr: str,
    jobcentre: str,
    rehab_unit: str,
    written: date,
    citizen_assessment: str,
    therapist_assessment: str,
    sessions_attended: int,
    sessions_offered: int,
    end: date,
    scores: list[Score],
) -> dict[str, Any]:
    """A status note (``end`` = the expected end) or final note (``end`` = the last day)."""
    if kind not in _TOPICS:
        raise ValueError(f"kind is {STATUS_NOTE} or {FINAL_NOTE}")
    if not 0 <= sessions_attended <= sessions_offered:
        raise ValueError("attended sessions are between 0 and the sessions offered")
    patient, response_url = _urn(1), _urn(2)
    observations = [
        (
            _urn(10 + i),
            score_observation(s, patient=patient, performer=rehab_unit, effective=written),
        )
        for i, s in enumerate(scores)
    ]
    end_text = "Forventet afslutning" if kind == STATUS_NOTE else "Afsluttet"
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "meta": {"security": security(REHAB_PROGRESS)},
        "questionnaire": f"{QUESTIONNAIRE_BASE}/{kind}|{QUESTIONNAIRE_VERSION}",
        "status": "completed",
        "subject": {"reference": patient},
        "authored": written.isoformat(),
        "author": {"reference": rehab_unit},
        "item": [
            {
                "linkId": "1",
                "text": "Borgerens egen vurdering",
                "item": [
                    _answer("1.1", "Borgerens vurdering", {"valueString": citizen_assessment})
                ],
            },
            {
                "linkId": "2",
                "text": "Terapeutens vurdering",
                "item": [
                    _answer("2.1", "Terapeutens vurdering", {"valueString": therapist_assessment}),
                    _answer("2.2", end_text, {"valueDate": end.isoformat()}),
                ],
            },
            {
                "linkId": "3",
                "text": "Fremmøde",
                "item": [
                    _answer("3.1", "Fremmødte træningsgange", {"valueInteger": sessions_attended}),
                    _answer("3.2", "Tilbudte træningsgange", {"valueInteger": sessions_offered}),
                ],
            },
        ],
    }
    if observations:
        response["item"].append(
            {
                "linkId": "4",
                "text": "Testresultater ved start og nu",
                "item": [
                    _answer(
                        f"4.{i + 1}",
                        o["code"]["coding"][0]["display"],
                        {"valueReference": {"reference": url}},
                    )
                    for i, (url, o) in enumerate(observations)
                ],
            }
        )
    communication = {
        "resourceType": "Communication",
        "meta": {"security": security(REHAB_PROGRESS)},
        "basedOn": [{"reference": task}],
        "status": "completed",
        "category": [{"coding": [{"system": CARE_COMMUNICATION_CATEGORY, "code": "training"}]}],
        "subject": {"reference": patient},
        "topic": {"text": _TOPICS[kind]},
        "sent": written.isoformat(),
        "recipient": [{"reference": jobcentre}],
        "sender": {"reference": rehab_unit},
        "payload": [
            {"contentReference": {"reference": response_url}},
            *({"contentReference": {"reference": url}} for url, _ in observations),
        ],
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": _urn(0), "resource": communication},
            {
                "fullUrl": patient,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": CPR_SYSTEM, "value": cpr}],
                },
            },
            {"fullUrl": response_url, "resource": response},
            *({"fullUrl": url, "resource": o} for url, o in observations),
        ],
    }


__all__ = [
    "DATA_CATEGORY_SYSTEM",
    "FINAL_NOTE",
    "STATUS_NOTE",
    "Score",
    "interpretation",
    "note_bundle",
    "score_observation",
]
