"""The one module that fixes the FHIR release for the whole code base.

FHIR R4 (4.0.1) it is: ``validate_resource`` checks against HL7's own R4 definitions
(``profiles/r4``) and returns the JSON as sent. fhir.resources 8 ships R5 at its top level and
R4B in ``fhir.resources.R4B``; nothing else in Brobygger imports ``fhir.resources``, and here it
serves only ``model_round_trip`` (the goldens' parse → dump check), never the data path: its
models lose decimal precision (``0.40`` → ``0.4``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from profiles._base_r4 import validate_base
from profiles._r4_definitions import is_resource

FHIR_VERSION = "4.0.1"

# The resource types the gateway stores and serves (CapabilityStatement lists exactly these).
SUPPORTED_TYPES: tuple[str, ...] = (
    "Appointment",
    "AuditEvent",
    "Binary",
    "CarePlan",
    "Communication",
    "Condition",
    "Consent",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "ServiceRequest",
    "Task",
)


@dataclass(frozen=True, slots=True)
class ResourceIssue:
    """One problem found in a resource: where (FHIRPath-like) and which rule failed."""

    expression: str
    message: str


class ResourceInvalid(ValueError):
    """The input is not a valid FHIR R4 resource; ``issues`` say where and why."""

    def __init__(self, issues: list[ResourceIssue]) -> None:
        super().__init__("; ".join(f"{i.expression}: {i.message}" for i in issues))
        self.issues = issues


@cache
def _model_class(resource_type: str) -> Any:
    try:
        return get_fhir_model_class(resource_type)
    except KeyError:
        return None


def is_resource_type(name: str) -> bool:
    """True when ``name`` is a concrete FHIR R4 resource type (HL7's R4 definitions)."""
    return bool(name) and is_resource(name)


def validate_resource(data: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Check ``data`` against base R4 (HL7's definitions); return it unchanged (a deep copy).

    The returned JSON is what the client sent, decimals included (``0.40`` stays ``0.40``):
    nothing is re-serialised through a model. Raises ``ResourceInvalid`` with element paths and
    rule texts, never with the offending values (they may be health data). Warnings (an
    extension nobody here knows) do not fail the check.
    """
    if not isinstance(data, dict):
        raise ResourceInvalid([ResourceIssue("$", "a resource must be a JSON object")])
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        raise ResourceInvalid(
            [ResourceIssue("resourceType", "missing or not a FHIR R4 resource type")]
        )
    if expected_type is not None and resource_type != expected_type:
        raise ResourceInvalid(
            [
                ResourceIssue(
                    "resourceType", f"expected {expected_type}, the body says {resource_type}"
                )
            ]
        )
    errors = [i for i in validate_base(data) if i.severity in ("error", "fatal")]
    if errors:
        raise ResourceInvalid([ResourceIssue(i.expression, i.text) for i in errors])
    return copy.deepcopy(data)


def model_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    """Parse ``data`` with the R4B models and dump it again (golden tests' round trip).

    Not used on the data path: the models drop decimal precision (``0.40`` → ``0.4``).
    """
    model = _model_class(str(data.get("resourceType")))
    if model is None:
        raise ResourceInvalid([ResourceIssue("resourceType", "not a model type")])
    try:
        parsed = model.model_validate(data)
    except (ValidationError, KeyError) as exc:
        raise ResourceInvalid(
            [ResourceIssue(str(data["resourceType"]), "the model refuses it")]
        ) from exc
    dumped: dict[str, Any] = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped
