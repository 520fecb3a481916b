"""Code systems, canonical URLs and security labels used by the adapters.

Everything this project defines hangs off ``BROBYGGER_BASE`` (identifiers.md, "Our own canonical
URLs"); the external systems are copied from identifiers.md, "Code systems".
"""

from __future__ import annotations

from typing import Any

BROBYGGER_BASE = "http://brobygger.dk/fhir"


def code_system(name: str) -> str:
    return f"{BROBYGGER_BASE}/CodeSystem/{name}"


def extension_url(name: str) -> str:
    return f"{BROBYGGER_BASE}/StructureDefinition/{name}"


def identifier_system(name: str) -> str:
    return f"{BROBYGGER_BASE}/sid/{name}"


def questionnaire_url(form_code: str) -> str:
    return f"{BROBYGGER_BASE}/Questionnaire/{form_code}"


# --- external code systems (identifiers.md, "Code systems") --------------------------------
SKS_SYSTEM = "urn:oid:1.2.208.176.2.4"
SKS_D_SYSTEM = "urn:oid:1.2.208.176.2.4.12"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
ICF_SYSTEM = "http://hl7.org/fhir/sid/icf"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
# Diagnosis code systems: a form field carrying one of these holds a diagnosis.
DIAGNOSIS_SYSTEMS = frozenset({SKS_SYSTEM, SKS_D_SYSTEM, ICD10_SYSTEM})

# --- HL7 terminology used in the output ------------------------------------------------------
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DIAGNOSIS_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
PROVENANCE_AGENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
URI_SYSTEM = "urn:ietf:rfc:3986"

# --- our code systems ------------------------------------------------------------------------
DATA_CATEGORY_SYSTEM = code_system("data-category")
PARTICIPANT_KIND_SYSTEM = code_system("participant-kind")
DOCUMENT_TYPE_SYSTEM = code_system("document-type")
OBSERVATION_CODE_SYSTEM = code_system("observation-code")
DIAGNOSIS_RANK_SYSTEM = code_system("diagnosis-rank")

# Identifier systems for our business identifiers and derived keys.
SHA256_SYSTEM = identifier_system("sha256")
SOURCE_DOCUMENT_TAG_SYSTEM = identifier_system("source-document")

# data-category codes (identifiers.md, "Our own canonical URLs").
REHAB_PLAN = "rehab-plan"
MEDICAL_STATEMENT = "medical-statement"
REHAB_PROGRESS = "rehab-progress"
SICKNESS_BENEFIT_CASE = "sickness-benefit-case"
EMPLOYMENT_RELEVANT = "employment-relevant"
MENTAL_HEALTH = "mental-health"
DATA_CATEGORIES = (
    REHAB_PLAN,
    MEDICAL_STATEMENT,
    REHAB_PROGRESS,
    SICKNESS_BENEFIT_CASE,
    EMPLOYMENT_RELEVANT,
    MENTAL_HEALTH,
)


def is_mental_health_diagnosis(code: str) -> bool:
    """ICD-10 chapter F: SKS-D codes ``DF…``; plain ICD-10 codes ``F…``."""
    upper = code.upper()
    return upper.startswith("DF") or (upper.startswith("F") and upper[1:3].isdigit())


def security(*categories: str) -> list[dict[str, Any]]:
    """``meta.security`` codings for the given data categories (deduplicated, in order)."""
    seen: list[str] = []
    for category in categories:
        if category not in DATA_CATEGORIES:
            raise ValueError(f"unknown data category {category}")
        if category not in seen:
            seen.append(category)
    return [{"system": DATA_CATEGORY_SYSTEM, "code": code} for code in seen]


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        out["display"] = display
    return out


def concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [coding(system, code)]}
    if text is not None:
        out["text"] = text
    return out
