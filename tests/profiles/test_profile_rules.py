"""The validator: goldens pass, every constraint and cardinality fires, the right profiles apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from profile_cases import BREAKS, SD, VALID, broken, valid

from profiles import all_definitions, outcome, validate
from profiles._rules import compile_expression

GOLDENS = sorted(Path(__file__).resolve().parents[1].glob("data/*/*/expected.json"))


def _profile_for(resource: dict[str, Any]) -> str | None:
    """Which of our profiles a golden's resource is meant to meet (the adapters declare it)."""
    kind = resource["resourceType"]
    labels = {s["code"] for s in resource.get("meta", {}).get("security", [])}
    by_type = {
        "EpisodeOfCare": "sickness-benefit-case",
        "CarePlan": "gradual-return-plan",
        "Task": "deadline-task",
        "QuestionnaireResponse": "medical-statement-response",
        "Consent": "privacy-consent",
    }
    if kind == "ServiceRequest":
        return SD + ("rehab-plan" if resource["intent"] == "plan" else "statement-request")
    if kind == "Observation":
        return SD + "employment-relevant-observation" if "employment-relevant" in labels else None
    return SD + by_type[kind] if kind in by_type else None


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_there_are_goldens() -> None:
    assert len(GOLDENS) >= 20


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_golden_bundles_validate_without_errors(golden: Path) -> None:
    bundle = _load(golden)
    report = validate(bundle)
    assert report.issues == ()
    for entry in bundle["entry"]:
        profile = _profile_for(entry["resource"])
        declared = entry["resource"].get("meta", {}).get("profile")
        assert declared == ([f"{profile}|0.1.0"] if profile else None), declared
        if profile is not None:
            single = validate(entry["resource"], profile=profile)
            assert single.issues == (), (profile, single.issues)
            assert single.profiles == (f"{profile}|0.1.0",)


def test_every_profile_is_exercised_by_a_golden_or_a_case() -> None:
    resource_profiles = {
        d["url"].rsplit("/", 1)[1]
        for d in all_definitions()
        if d["resourceType"] == "StructureDefinition" and d["kind"] == "resource"
    }
    assert resource_profiles == set(VALID)


@pytest.mark.parametrize("profile", sorted(VALID))
def test_minimal_valid_resources_pass(profile: str) -> None:
    report = validate(valid(profile), profile=SD + profile)
    assert report.ok and report.issues == ()


def _constraint_keys() -> set[str]:
    keys: set[str] = set()
    for definition in all_definitions():
        if definition["resourceType"] != "StructureDefinition":
            continue
        for element in definition["differential"]["element"]:
            keys.update(c["key"] for c in element.get("constraint", []))
    return keys


def test_every_constraint_has_a_negative_case() -> None:
    assert set(BREAKS) == _constraint_keys()


# Profile rules that restate an R4 required binding: the base check reports them first.
BASE_BINDING_FIRST = frozenset({"bro-con-3", "bro-con-6"})


@pytest.mark.parametrize("key", sorted(BREAKS))
def test_breaking_a_rule_reports_its_key_and_element(key: str) -> None:
    profile, resource, expression = broken(key)
    report = validate(resource, profile=SD + profile)
    if key in BASE_BINDING_FIRST:
        # Base R4 already refuses the code (a required binding), before any profile rule.
        assert [(i.severity, i.text.split(":")[0]) for i in report.issues] == [
            ("error", "binding")
        ], report.issues
        return
    found = [i for i in report.issues if i.key == key]
    assert [(i.expression, i.code, i.severity) for i in found] == [
        (expression, "invariant", "error")
    ]
    assert found[0].text.startswith(f"{key}: ")
    assert not [i for i in report.issues if i.key not in (key, None)]


@pytest.mark.parametrize(
    ("profile", "path", "expression"),
    [
        ("rehab-plan", "requester", "ServiceRequest.requester"),
        ("rehab-plan", "reasonReference", "ServiceRequest.reasonReference"),
        ("sickness-benefit-case", "managingOrganization", "EpisodeOfCare.managingOrganization"),
        ("gradual-return-plan", "activity", "CarePlan.activity"),
        ("deadline-task", "owner", "Task.owner"),
        ("employment-relevant-observation", "effectiveDateTime", "Observation.effective[x]"),
        ("privacy-consent", "dateTime", "Consent.dateTime"),
    ],
)
def test_missing_required_elements_are_named(profile: str, path: str, expression: str) -> None:
    resource = valid(profile)
    del resource[path]
    report = validate(resource, profile=SD + profile)
    assert ("required", expression) in [(i.code, i.expression) for i in report.issues]


def test_nested_cardinality_names_the_element() -> None:
    resource = valid("deadline-task")
    resource["restriction"] = {"period": {"start": "2026-10-01"}}
    report = validate(resource, profile=SD + "deadline-task")
    assert [(i.code, i.expression) for i in report.issues] == [
        ("required", "Task.restriction.period.end")
    ]


def test_declared_profiles_apply_and_unknown_ones_warn() -> None:
    resource = valid("deadline-task")
    del resource["owner"]
    resource["meta"]["profile"] = [SD + "deadline-task", "http://example.org/other"]
    report = validate(resource)
    assert report.profiles == (f"{SD}deadline-task|0.1.0",)
    assert [(i.severity, i.code, i.expression) for i in report.issues] == [
        ("error", "required", "Task.owner"),
        ("warning", "not-supported", "Task.meta.profile"),
    ]


def test_an_explicit_unknown_profile_or_wrong_type_is_an_error() -> None:
    unknown = validate(valid("deadline-task"), profile=SD + "nope")
    wrong = validate(valid("deadline-task"), profile=SD + "rehab-plan")
    assert [(i.severity, i.code) for i in unknown.issues] == [("error", "not-supported")]
    assert [(i.severity, i.code) for i in wrong.issues] == [("error", "invalid")]


def test_bundle_entries_are_checked_against_their_own_profiles() -> None:
    task = valid("deadline-task")
    task["meta"]["profile"] = [SD + "deadline-task"]
    task["status"] = "completed"
    plain = valid("rehab-plan")  # no meta.profile: not profiled, only codes and extensions
    plain["intent"] = "proposal"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": plain}, {"resource": task}],
    }
    report = validate(bundle)
    assert [(i.key, i.expression) for i in report.issues] == [
        ("bro-dt-2", "Bundle.entry[1].resource")
    ]


def test_base_r4_failures_stop_before_the_profiles() -> None:
    resource = valid("rehab-plan")
    resource["intent"] = 5
    resource["unknownElement"] = True
    report = validate(resource, profile=SD + "rehab-plan")
    assert report.issues and all(i.code in ("structure", "value") for i in report.issues)
    assert all(i.key is None for i in report.issues)


def test_codes_of_our_systems_and_our_extensions_are_checked() -> None:
    resource = valid("sickness-benefit-case")
    resource["type"][0]["coding"][0]["code"] = "unknown-type"
    resource["extension"] = [
        {"url": f"{SD}employer", "valueString": "Lys Montage"},
        {"url": f"{SD}not-ours-yet", "valueString": "x"},
        {"url": f"{SD}agreed-action", "valueString": "x"},
        {
            "url": f"{SD}sickness-benefit-category",
            "extension": [{"url": "set", "valueDate": "2026-01-01"}],
        },
    ]
    report = validate(resource)
    assert sorted((i.expression, i.severity, i.code) for i in report.issues) == [
        ("EpisodeOfCare.extension[0]", "error", "structure"),
        ("EpisodeOfCare.extension[1]", "warning", "not-supported"),
        ("EpisodeOfCare.extension[2]", "error", "structure"),
        ("EpisodeOfCare.extension[3]", "error", "required"),
        ("EpisodeOfCare.type[0].coding[0].code", "error", "code-invalid"),
    ]


def test_texts_never_echo_values() -> None:
    resource = valid("medical-statement-response")
    secret = "Hemmelig-diagnose-tekst"
    resource["item"].append({"linkId": "9.9", "answer": [{"valueString": secret}]})
    resource["identifier"]["system"] = secret
    report = validate(resource, profile=SD + "medical-statement-response")
    assert report.issues
    assert secret not in json.dumps(outcome(report))


def test_outcome_is_an_operation_outcome() -> None:
    assert outcome(validate(valid("deadline-task"))) == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": "All OK"}],
    }
    _, resource, _ = broken("bro-dt-2")
    result = outcome(validate(resource, profile=SD + "deadline-task"))
    assert result["issue"] == [
        {
            "severity": "error",
            "code": "invariant",
            "diagnostics": "bro-dt-2: A completed task names its result in output",
            "expression": ["Task"],
        }
    ]


def test_expressions_are_compiled_once() -> None:
    bundles = [_load(g) for g in GOLDENS]
    for bundle in bundles:  # declare our profiles so validating the Bundle runs every rule
        for entry in bundle["entry"]:
            profile = _profile_for(entry["resource"])
            if profile is not None:
                entry["resource"].setdefault("meta", {})["profile"] = [profile]
        assert validate(bundle).issues == ()
    before = compile_expression.cache_info()
    for _ in range(20):
        for bundle in bundles:
            validate(bundle)
    after = compile_expression.cache_info()
    assert after.misses == before.misses
    assert after.hits > before.hits
