"""The shipped JSON: valid R4 (two validators), canonical, versioned, covering the adapters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mappings.gp_statement._forms import FORMS, FieldSpec
from profiles import all_definitions, get_definition, questionnaire_for
from profiles._registry import BROBYGGER_BASE
from profiles.fhir_release import validate_resource

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
FILES = sorted(PROFILES_DIR.glob("*/*.json"))
GOLDENS = sorted(Path(__file__).resolve().parents[1].glob("data/*/*/expected.json"))
TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "fhir-validate"
IN_CI = os.environ.get("CI", "").lower() == "true"
KIND_BY_TYPE = {"text": "text", "date": "date", "decimal": "decimal", "code": "choice"}


def test_every_file_is_loaded() -> None:
    assert len(all_definitions()) == len(FILES) > 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_file_is_a_valid_r4_resource_with_our_canonical(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    validate_resource(resource)
    kind = resource["resourceType"]
    assert resource["url"] == f"{BROBYGGER_BASE}/{kind}/{resource['id']}"
    assert resource["version"]
    assert get_definition(f"{resource['url']}|{resource['version']}") == resource
    if kind == "StructureDefinition":
        assert resource["fhirVersion"] == "4.0.1"
        assert resource["derivation"] == "constraint"
        assert resource["status"] == "draft"


def _cannot_run(reason: str) -> None:
    message = f"fhir-validate CANNOT RUN, PROFILE JSON NOT VALIDATED: {reason}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def test_every_file_passes_the_external_validator() -> None:
    tool = Path(os.environ.get("BROBYGGER_FHIR_VALIDATE", TOOL))
    if not tool.is_file():
        _cannot_run(f"not found at {tool}")
    if shutil.which("node") is None:
        _cannot_run("Node.js is not installed")
    done = subprocess.run(
        [str(tool), *map(str, FILES)], capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode == 2:
        _cannot_run(output.strip() or "exit 2")
    assert done.returncode == 0, output
    assert output.count("VALID") >= len(FILES) and "INVALID" not in output


def _codings(value: Any, out: set[tuple[str, str]]) -> None:
    if isinstance(value, list):
        for item in value:
            _codings(item, out)
    elif isinstance(value, dict):
        if isinstance(value.get("system"), str) and "code" in value:
            out.add((value["system"], value["code"]))
        for child in value.values():
            _codings(child, out)


def test_our_code_systems_cover_every_code_the_goldens_use() -> None:
    used: set[tuple[str, str]] = set()
    for golden in GOLDENS:
        _codings(json.loads(golden.read_text(encoding="utf-8")), used)
    ours = {(s, c) for s, c in used if s.startswith(f"{BROBYGGER_BASE}/CodeSystem/")}
    assert len(ours) > 50
    for system, code in sorted(ours):
        code_system = get_definition(system)
        assert code_system is not None, system
        assert code in {c["code"] for c in code_system["concept"]}, (system, code)


@pytest.mark.parametrize(
    ("name", "codes"),
    [
        (
            "purpose-of-use",
            [
                "sickness-benefit-follow-up",
                "rehabilitation-planning",
                "round-table-meeting",
                "medical-statement",
                "citizen-access",
            ],
        ),
        (
            "data-category",
            [
                "rehab-plan",
                "medical-statement",
                "rehab-progress",
                "sickness-benefit-case",
                "employment-relevant",
                "mental-health",
            ],
        ),
        (
            "message-event",
            [
                "rehab-plan",
                "medical-statement-request",
                "medical-statement",
                "sickness-benefit-case",
                "consent-update",
            ],
        ),
        (
            "participant-kind",
            ["hospital", "gp", "rehab-unit", "jobcentre", "employer", "citizen-portal"],
        ),
    ],
)
def test_contract_code_systems_have_exactly_the_codes_of_identifiers_md(
    name: str, codes: list[str]
) -> None:
    code_system = get_definition(f"{BROBYGGER_BASE}/CodeSystem/{name}")
    assert code_system is not None
    assert [c["code"] for c in code_system["concept"]] == codes


def _questionnaire_fields(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item["type"] == "group":
            out.extend(_questionnaire_fields(item["item"]))
        else:
            out.append(item)
    return out


def _agrees(spec: FieldSpec, item: dict[str, Any]) -> None:
    assert item["type"] == KIND_BY_TYPE[spec.kind], spec.link_id
    assert item.get("required", False) == spec.required, spec.link_id
    assert item.get("repeats", False) == spec.repeats, spec.link_id
    options = [o["valueCoding"] for o in item.get("answerOption", [])]
    if spec.codes is not None:
        assert {o["system"] for o in options} == {spec.code_system}, spec.link_id
        assert {o["code"]: o["display"] for o in options} == dict(spec.codes), spec.link_id
    else:
        assert not options, spec.link_id
    value_set = item.get("answerValueSet")
    if spec.diagnosis:
        vs = get_definition(value_set)
        assert vs is not None
        assert {i["system"] for i in vs["compose"]["include"]} == spec.systems
    else:
        assert value_set is None, spec.link_id
    observation = [c["code"] for c in item.get("code", [])]
    assert observation == ([spec.observation] if spec.observation else []), spec.link_id


@pytest.mark.parametrize("code", sorted(FORMS))
def test_the_adapter_form_table_agrees_with_the_questionnaires(code: str) -> None:
    form = FORMS[code]
    for version in form.versions:
        questionnaire = questionnaire_for(f"{BROBYGGER_BASE}/Questionnaire/{code}|{version}")
        assert questionnaire is not None, (code, version)
        assert questionnaire["title"] == form.title
        items = _questionnaire_fields(questionnaire["item"])
        assert [i["linkId"] for i in items] == [f.link_id for f in form.fields]
        for spec, item in zip(form.fields, items, strict=True):
            _agrees(spec, item)
        extensions = {e["url"].rsplit("/", 1)[1]: e for e in questionnaire.get("extension", [])}
        assert ("diagnoses-forbidden" in extensions) == form.no_diagnoses
        if form.requests is not None:
            requested = extensions["form-requests"]["valueCanonical"]
            assert requested == f"{BROBYGGER_BASE}/Questionnaire/{form.requests}|{version}"
        else:
            assert "form-requests" not in extensions


# The rehabilitation unit's notes are Questionnaires of their own (mappings/coordination).
REHAB_NOTES = {"REHAB-STATUS", "REHAB-FINAL"}


def test_every_questionnaire_is_a_form_of_the_adapter() -> None:
    codes = {d["id"] for d in all_definitions() if d["resourceType"] == "Questionnaire"}
    assert codes == set(FORMS) | REHAB_NOTES


def test_lookups() -> None:
    url = f"{BROBYGGER_BASE}/Questionnaire/LAE285"
    latest = questionnaire_for(url)
    assert latest is not None and latest == questionnaire_for(f"{url}|2024")
    assert questionnaire_for(f"{url}|1999") is None
    assert questionnaire_for(f"{BROBYGGER_BASE}/CodeSystem/data-category") is None
    copy = get_definition(url)
    assert copy is not None
    copy["item"].clear()  # callers get copies: the shared definitions stay intact
    assert questionnaire_for(url) == latest
