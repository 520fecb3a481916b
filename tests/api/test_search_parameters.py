"""The search-parameter table is generated from HL7's R4 SearchParameters and agrees with them."""

from __future__ import annotations

from gateway.search.parameters import (
    KIND_OVERRIDES,
    OWN,
    PATH_OVERRIDES,
    SEARCH_PARAMS,
    SUPPORTED,
    SUPPORTED_COMMON,
    walk,
)
from profiles import official_search_parameters
from profiles._r4_definitions import structures

OFFICIAL = {(base, p["code"]): p for p in official_search_parameters() for base in p["base"]}


def test_every_supported_parameter_is_hl7s_with_its_type() -> None:
    for rtype, codes in SUPPORTED.items():
        for code in codes:
            official = OFFICIAL[(rtype, code)]
            ours = SEARCH_PARAMS[rtype][code]
            assert ours.kind == KIND_OVERRIDES.get((rtype, code), official["type"]), (rtype, code)
        for code in SUPPORTED_COMMON:
            assert SEARCH_PARAMS[rtype][code].kind == OFFICIAL[("Resource", code)]["type"]


def _is_json_path(rtype: str, path: str) -> bool:
    structure, at = structures()[rtype], rtype
    for segment in path.split("."):
        element = structure.json_names.get(at, {}).get(segment)
        if element is None:
            return False
        suffix = segment[len(element.name) :]
        code = next((c for c in element.types if c[:1].upper() + c[1:] == suffix), None)
        code = code or (element.types[0] if element.types else "")
        if element.path in structure.children:
            at = element.path
        elif code in structures():
            structure, at = structures()[code], code
    return True


def test_every_path_is_an_element_of_the_type() -> None:
    for rtype, params in SEARCH_PARAMS.items():
        for param in params.values():
            for path in param.paths:
                assert _is_json_path(rtype, path), (rtype, param.name, path)


def test_choices_targets_and_alternatives_come_from_the_expressions() -> None:
    observation = SEARCH_PARAMS["Observation"]
    assert observation["date"].paths == (
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveInstant",
    )  # effectiveTiming has no single date range to index
    assert observation["value-concept"].paths == ("valueCodeableConcept",)
    assert observation["patient"].paths == ("subject",)
    assert observation["patient"].targets == ("Patient",)
    assert SEARCH_PARAMS["Condition"]["onset-date"].paths == ("onsetDateTime", "onsetPeriod")
    assert SEARCH_PARAMS["Organization"]["name"].paths == ("name", "alias")
    assert SEARCH_PARAMS["Consent"]["source-reference"].paths == ("sourceReference",)
    assert SEARCH_PARAMS["Task"]["patient"].paths == ("for",)


def test_our_own_parameters_are_not_r4s_and_overrides_are_few() -> None:
    for rtype, params in OWN.items():
        for param in params:
            assert (rtype, param.name) not in OFFICIAL, (rtype, param.name)
    # Each override is a deliberate difference with its reason beside it in parameters.py:
    # QuestionnaireResponse?questionnaire as a URI, AuditEvent?patient on entity.what, and
    # Task?period also on the due date (the worklists of docs/coordination.md).
    assert set(KIND_OVERRIDES) | set(PATH_OVERRIDES) == {
        ("QuestionnaireResponse", "questionnaire"),
        ("AuditEvent", "patient"),
        ("Task", "period"),
    }


def test_the_index_walk_finds_values_on_the_generated_paths() -> None:
    observation = {
        "resourceType": "Observation",
        "effectivePeriod": {"start": "2024-01-01"},
        "subject": {"reference": "Patient/1"},
    }
    found = [
        v for path in SEARCH_PARAMS["Observation"]["date"].paths for v in walk(observation, path)
    ]
    assert found == [{"start": "2024-01-01"}]


def test_the_capability_statement_names_hl7s_definitions_and_validate(client: object) -> None:
    from starlette.testclient import TestClient

    assert isinstance(client, TestClient)
    statement = client.get("/fhir/metadata").json()
    rest = statement["rest"][0]
    assert {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    } in rest["operation"]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    date = next(p for p in observation["searchParam"] if p["name"] == "date")
    assert date["definition"] == OFFICIAL[("Observation", "date")]["url"]
