"""Write rule 8 (task-owner): the owner of a Task records its fulfilment, nothing else."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from consent import Requester, decide_write

JOBCENTRE, REHAB = "Organization/org-jobcenter-aarhus", "Organization/org-aarhus-genoptraening"
UNIT = Requester("aarhus-genoptraening", "rehab-unit", REHAB, "rehabilitation-planning")
OTHER = Requester("roskilde-traening", "rehab-unit", "Organization/org-roskilde-traening", None)
REASONS = "http://brobygger.dk/fhir/CodeSystem/referral-decline-reason"
TASK: dict[str, Any] = {
    "resourceType": "Task",
    "id": "t1",
    "meta": {
        "source": "urn:brobygger:participant:jobcenter-aarhus",
        "security": [
            {
                "system": "http://brobygger.dk/fhir/CodeSystem/data-category",
                "code": "sickness-benefit-case",
            }
        ],
    },
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/ole"},
    "requester": {"reference": JOBCENTRE},
    "owner": {"reference": REHAB},
}


def _changed(**changes: Any) -> dict[str, Any]:
    task = copy.deepcopy(TASK)
    task["meta"].pop("source")  # what a client sends (the gateway strips and restamps it)
    task.update(changes)
    return task


@pytest.mark.parametrize(
    "incoming",
    [
        _changed(
            status="accepted", output=[{"type": {"text": "start"}, "valueDate": "2026-12-14"}]
        ),
        _changed(status="in-progress", executionPeriod={"start": "2026-12-14"}),
        _changed(
            status="rejected", statusReason={"coding": [{"system": REASONS, "code": "no-capacity"}]}
        ),
        _changed(
            status="completed",
            output=[
                {"type": {"text": "note"}, "valueReference": {"reference": "Communication/c1"}}
            ],
        ),
    ],
)
def test_the_owner_records_the_fulfilment(incoming: dict[str, Any]) -> None:
    decision = decide_write(UNIT, "update", TASK, incoming)
    assert decision.allowed and decision.rule == "task-owner"


@pytest.mark.parametrize(
    ("incoming", "why"),
    [
        (_changed(owner={"reference": "Organization/org-lys-montage"}), "owner"),
        (_changed(note=[{"text": "fri tekst"}]), "note"),
        (_changed(statusReason={"text": "diagnose"}), "statusReason"),
        (_changed(status="draft"), "fulfilment status"),
        (
            _changed(output=[{"type": {"text": "x"}, "valueString": "helbred"}]),
            "date or a reference",
        ),
        (_changed(meta={"security": []}), "labels"),
        (
            _changed(
                meta={
                    **TASK["meta"],
                    "tag": [
                        {
                            "system": "http://brobygger.dk/fhir/CodeSystem/addressee",
                            "code": "lys-montage",
                        }
                    ],
                }
            ),
            "labels or tags",
        ),
    ],
)
def test_nothing_else(incoming: dict[str, Any], why: str) -> None:
    incoming["meta"].pop("source", None)
    decision = decide_write(UNIT, "update", TASK, incoming)
    assert not decision.allowed
    # Moving the owner away ends rule 8's reach: the author rule refuses it.
    assert decision.rule == ("not-author" if why == "owner" else "task-owner")
    assert why == "owner" or why in decision.reason


def test_not_the_owner_not_a_delete_not_another_type() -> None:
    assert decide_write(OTHER, "update", TASK, _changed(status="accepted")).rule == "not-author"
    assert not decide_write(UNIT, "delete", TASK, None).allowed
    request = {**TASK, "resourceType": "ServiceRequest", "performer": [{"reference": REHAB}]}
    assert (
        decide_write(UNIT, "update", request, {**request, "status": "completed"}).rule
        == "not-author"
    )
