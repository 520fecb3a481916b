"""A QuestionnaireResponse against its Questionnaire: linkIds, types, options, required, repeats."""

from __future__ import annotations

from typing import Any

import pytest
from profile_cases import BASE, SD, valid

from profiles import questionnaire_for, validate, validate_questionnaire_response

WORK_CAPACITY = f"{BASE}/CodeSystem/work-capacity"
SKS_D = "urn:oid:1.2.208.176.2.4.12"


def _form(code: str) -> dict[str, Any]:
    found = questionnaire_for(f"{BASE}/Questionnaire/{code}|2024")
    assert found is not None
    return found


def _response(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": list(items)}


def _capacity(code: str = "delvis", system: str = WORK_CAPACITY) -> dict[str, Any]:
    return {"linkId": "3.1", "answer": [{"valueCoding": {"system": system, "code": code}}]}


def _issues(response: dict[str, Any], form: str = "LAE285") -> list[tuple[str, str, str]]:
    report = validate_questionnaire_response(response, _form(form))
    return [(i.code, i.expression, i.text) for i in report.issues]


def test_a_complete_answer_passes() -> None:
    response = _response(
        {
            "linkId": "2",
            "item": [
                {
                    "linkId": "2.1",
                    "answer": [
                        {"valueCoding": {"system": SKS_D, "code": "DM751"}},
                        {
                            "valueCoding": {
                                "system": "http://hl7.org/fhir/sid/icd-10",
                                "code": "M75.1",
                            }
                        },
                    ],
                }
            ],
        },
        {
            "linkId": "3",
            "item": [
                _capacity(),
                {"linkId": "3.2", "answer": [{"valueDecimal": 15}]},
                {"linkId": "3.5", "answer": [{"valueDate": "2027-01-11"}]},
            ],
        },
    )
    assert _issues(response) == []


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            _response(
                {
                    "linkId": "3",
                    "item": [_capacity(), {"linkId": "3.9", "answer": [{"valueString": "x"}]}],
                }
            ),
            ("structure", "QuestionnaireResponse.item[0].item[1]", "linkId 3.9 is not in the form"),
        ),
        (
            _response(
                {"linkId": "3", "item": [_capacity()]},
                {"linkId": "3.2", "answer": [{"valueDecimal": 1}]},
            ),
            ("structure", "QuestionnaireResponse.item[1]", "linkId 3.2 is not expected here"),
        ),
        (
            _response(
                {
                    "linkId": "3",
                    "item": [_capacity(), {"linkId": "3.2", "answer": [{"valueString": "15"}]}],
                }
            ),
            (
                "value",
                "QuestionnaireResponse.item[0].item[1].answer[0]",
                "item 3.2 (decimal) needs valueDecimal",
            ),
        ),
        (
            _response({"linkId": "3", "item": [_capacity("halv")]}),
            (
                "code-invalid",
                "QuestionnaireResponse.item[0].item[0].answer[0]",
                "item 3.1: not one of the item's options",
            ),
        ),
        (
            _response(
                {
                    "linkId": "3",
                    "item": [
                        _capacity(),
                        {
                            "linkId": "3.5",
                            "answer": [{"valueDate": "2027-01-11"}, {"valueDate": "2027-02-11"}],
                        },
                    ],
                }
            ),
            ("structure", "QuestionnaireResponse.item[0].item[1]", "item 3.5 takes one answer"),
        ),
        (
            _response({"linkId": "3", "item": [_capacity(), _capacity()]}),
            ("structure", "QuestionnaireResponse.item[0].item[1]", "item 3.1 does not repeat"),
        ),
        (
            _response(
                {"linkId": "3", "item": [{"linkId": "3.3", "answer": [{"valueString": "x"}]}]}
            ),
            ("required", "QuestionnaireResponse.item[0]", "required item 3.1 is not answered"),
        ),
        (_response(), ("required", "QuestionnaireResponse", "required item 3 is not answered")),
        (
            _response(
                {"linkId": "3", "item": [_capacity()]},
                {
                    "linkId": "2",
                    "item": [
                        {
                            "linkId": "2.1",
                            "answer": [
                                {"valueCoding": {"system": "http://loinc.org", "code": "1-8"}}
                            ],
                        }
                    ],
                },
            ),
            (
                "code-invalid",
                "QuestionnaireResponse.item[1].item[0].answer[0]",
                f"item 2.1: not in {BASE}/ValueSet/diagnosis-codes",
            ),
        ),
        (
            _response({"linkId": "3", "answer": [{"valueString": "x"}], "item": [_capacity()]}),
            ("structure", "QuestionnaireResponse.item[0]", "item 3 (group) takes no answers"),
        ),
    ],
)
def test_form_rules(response: dict[str, Any], expected: tuple[str, str, str]) -> None:
    assert _issues(response) == [expected]


def test_the_mulighedserklaering_never_holds_a_diagnosis() -> None:
    response = _response(
        {
            "linkId": "2",
            "item": [
                {
                    "linkId": "2.4",
                    "answer": [{"valueCoding": {"system": WORK_CAPACITY, "code": "fuld"}}],
                },
                {"linkId": "2.3", "answer": [{"valueCoding": {"system": SKS_D, "code": "DM751"}}]},
            ],
        }
    )
    assert _issues(response, "MULIGHED") == [
        (
            "business-rule",
            "QuestionnaireResponse.item[0].item[1].answer[0]",
            "item 2.3: this form never holds a diagnosis",
        )
    ]


def test_requests_need_their_due_date() -> None:
    assert _issues(_response(), "LAE125-ANMODNING") == [
        ("required", "QuestionnaireResponse", "required item svarfrist is not answered")
    ]


def test_validate_checks_responses_to_our_questionnaires() -> None:
    response = valid("medical-statement-response")
    response["item"][0]["item"][0]["answer"][0]["valueCoding"]["code"] = "halv"
    report = validate(response)
    assert [(i.code, i.expression) for i in report.issues] == [
        ("code-invalid", "QuestionnaireResponse.item[0].item[0].answer[0]"),
        ("code-invalid", "QuestionnaireResponse.item[0].item[0].answer[0].valueCoding.code"),
    ]
    inside = validate(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": response}]}
    )
    assert "Bundle.entry[0].resource.item[0].item[0].answer[0]" in [
        i.expression for i in inside.issues
    ]


def test_an_unknown_form_or_version_is_an_error() -> None:
    response = valid("medical-statement-response")
    response["questionnaire"] = f"{BASE}/Questionnaire/LAE285|1999"
    report = validate(response, profile=SD + "medical-statement-response")
    assert [(i.code, i.expression) for i in report.issues] == [
        ("not-found", "QuestionnaireResponse.questionnaire")
    ]
