"""The one module that fixes the FHIR release for the whole code base.

fhir.resources 8 ships R5 at its top level; the R4 wire format lives in
``fhir.resources.R4B``. Nothing else in Brobygger imports ``fhir.resources``: every package
asks this module to check or build a resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from profiles._core_rules import core_rule_issues

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


_MODELS: dict[str, Any] = {}


def _model_class(resource_type: str) -> Any:
    # Only known names are remembered: a client's made-up names must not grow a cache.
    found = _MODELS.get(resource_type)
    if found is None:
        try:
            found = get_fhir_model_class(resource_type)
        except (KeyError, ValueError):  # fhir.resources says ValueError for an unknown name
            return None
        _MODELS[resource_type] = found
    return found


def is_resource_type(name: str) -> bool:
    """True when ``name`` is a FHIR R4 resource type known to the model library."""
    return bool(name) and name[0].isupper() and _model_class(name) is not None


def _location(root: str, loc: tuple[int | str, ...]) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.endswith("__ext"):
            path += "." + part[: -len("__ext")]
        else:
            path += "." + part
    return path


def validate_resource(data: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Check ``data`` against the R4 models; return it normalised as wire JSON.

    Raises ``ResourceInvalid`` with element paths and rule texts, never with the offending
    values (they may be health data).
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
    model = _model_class(resource_type)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        issues = [
            ResourceIssue(_location(resource_type, tuple(err["loc"])), err["msg"])
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ResourceInvalid(issues) from exc
    except KeyError as exc:
        # fhir.resources raises a bare KeyError for a nested unknown resourceType.
        raise ResourceInvalid(
            [ResourceIssue(resource_type, "contains a resource of an unknown type")]
        ) from exc
    broken = core_rule_issues(data, parsed, resource_type)
    if broken:
        raise ResourceInvalid([ResourceIssue(where, text) for where, text in broken])
    dumped: dict[str, Any] = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped
