"""The base FHIR R4 rules the R4B models do not check (pure).

fhir.resources checks structure and types, but not the invariants of the specification nor
required value-set bindings, nor that arrays and objects are non-empty (ele-1). An
independent validator does, so a server that stored such a resource would serve invalid R4.
These rules close that gap for the elements we meet:

- ele-1: no empty arrays or objects (an element has a value or children);
- required bindings: a code must be one the model lists for a required binding (the models
  carry these lists; an extensible list, marked ``+``, is not enforced);
- data-type invariants on every instance of the type: per-1 (Period), qty-3 (Quantity),
  cpt-2 (ContactPoint), att-1 (Attachment), ext-1 (Extension);
- resource invariants (FHIRPath, compiled once) from the R4 specification, by resource type.

Each rule text is the specification's ``human`` text; values are never echoed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models
from pydantic import BaseModel

# (key, FHIRPath evaluated on the resource, human text) from the R4 specification.
_RESOURCE_INVARIANTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Observation": (
        (
            "obs-6",
            "dataAbsentReason.empty() or value.empty()",
            "dataAbsentReason SHALL only be present if Observation.value[x] is not present",
        ),
    ),
    "Appointment": (
        (
            "app-2",
            "start.exists() = end.exists()",
            "Either start and end are specified, or neither",
        ),
        (
            "app-3",
            "(start.exists() and end.exists()) or "
            "(status in ('proposed' | 'cancelled' | 'waitlist'))",
            "Only proposed or cancelled appointments can be missing start/end dates",
        ),
        (
            "app-4",
            "cancelationReason.exists() implies (status='no-show' or status='cancelled')",
            "Cancelation reason is only used for appointments that have been cancelled, or no-show",
        ),
    ),
    "Patient": (
        (
            "pat-1",
            "contact.all(name.exists() or telecom.exists() or address.exists() "
            "or organization.exists())",
            "SHALL at least contain a contact's details or a reference to an organization",
        ),
    ),
    "Consent": (
        ("ppc-1", "policy.exists() or policyRule.exists()", "Either a Policy or PolicyRule"),
        (
            "ppc-2",
            "patient.exists() or scope.coding.where(system='something' and code='patient-privacy')"
            ".exists().not()",
            "IF Scope=privacy, there must be a patient",
        ),
        (
            "ppc-3",
            "patient.exists() or scope.coding.where(system='something' and code='research')"
            ".exists().not()",
            "IF Scope=research, there must be a patient",
        ),
    ),
    "Condition": (
        (
            "con-4",
            "abatement.empty() or clinicalStatus.coding.where(system='http://terminology.hl7.org/"
            "CodeSystem/condition-clinical' and (code='resolved' or code='remission' or "
            "code='inactive')).exists()",
            "If condition is abated, then clinicalStatus must be either inactive, resolved, or "
            "remission",
        ),
        (
            "con-5",
            "verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/"
            "condition-ver-status' and code='entered-in-error').empty() or clinicalStatus.empty()",
            "Condition.clinicalStatus SHALL NOT be present if verification Status is "
            "entered-in-error",
        ),
    ),
    "ServiceRequest": (
        (
            "prr-1",
            "orderDetail.empty() or code.exists()",
            "orderDetail SHALL only be present if code is present",
        ),
    ),
    "QuestionnaireResponse": (
        (
            "qrs-1",
            "item.descendants().where($this is QuestionnaireResponse.Item)"
            ".all((answer.exists() and item.exists()).not())",
            "Nested item can't be beneath both item and answer",
        ),
    ),
    "CarePlan": (
        (
            "cpl-3",
            "activity.all(detail.empty() or reference.empty())",
            "Provide a reference or detail, not both",
        ),
    ),
    "Organization": (
        (
            "org-1",
            "(identifier.count() + name.count()) > 0",
            "The organization SHALL at least have a name or an identifier, and possibly more than "
            "one",
        ),
    ),
    "Task": (
        (
            "inv-1",
            "lastModified.exists().not() or authoredOn.exists().not() "
            "or lastModified >= authoredOn",
            "Last modified date must be greater than or equal to authored-on date.",
        ),
    ),
}

_DOMAIN_INVARIANTS: tuple[tuple[str, str, str], ...] = (
    (
        "dom-2",
        "contained.contained.empty()",
        "If the resource is contained in another resource, it SHALL NOT contain nested Resources",
    ),
    (
        "dom-4",
        "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()",
        "If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a "
        "meta.lastUpdated",
    ),
    (
        "dom-5",
        "contained.meta.security.empty()",
        "If a resource is contained in another resource, it SHALL NOT have a security label",
    ),
)


@cache
def _compiled(expression: str) -> Any:
    # With the R4 model, choice elements resolve (``value`` finds ``valueString``).
    return compile_fhirpath(expression, models["r4"])


def _empty_elements(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        if not node:
            yield path
        for key, value in node.items():
            yield from _empty_elements(value, f"{path}.{key}")
    elif isinstance(node, list):
        if not node:
            yield path
        for index, value in enumerate(node):
            yield from _empty_elements(value, f"{path}[{index}]")


def _datatype_issue(model: BaseModel) -> tuple[str, str] | None:
    name = type(model).__name__
    if name == "Period":
        start, end = getattr(model, "start", None), getattr(model, "end", None)
        if start is not None and end is not None and _bounds(end)[1] <= _bounds(start)[0]:
            return "per-1", "If present, start SHALL have a lower value than end"
    elif name in ("Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "Money"):
        if getattr(model, "code", None) is not None and getattr(model, "system", None) is None:
            return "qty-3", "If a code for the unit is present, the system SHALL also be present"
    elif name == "ContactPoint":
        if getattr(model, "value", None) is not None and getattr(model, "system", None) is None:
            return "cpt-2", "A system is required if a value is provided."
    elif name == "Attachment":
        if getattr(model, "data", None) is not None and getattr(model, "contentType", None) is None:
            return "att-1", "If the Attachment has data, it SHALL have a contentType"
    elif name == "Extension":
        has_value = any(
            getattr(model, field, None) is not None
            for field in type(model).model_fields
            if field.startswith("value")
        )
        if bool(getattr(model, "extension", None)) == has_value:
            return "ext-1", "Must have either extensions or value[x], not both"
    return None


def _bounds(value: Any) -> tuple[datetime, datetime]:
    """The instants a date or dateTime value covers, as naive UTC [low, high)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value, value + timedelta(seconds=1)
    if isinstance(value, date):
        low = datetime(value.year, value.month, value.day)
        return low, low + timedelta(days=1)
    text = str(value)  # partial dates the models keep as text: "2024", "2024-02"
    year, _, rest = text.partition("-")
    month = int(rest[:2]) if rest else None
    if month is None:
        return datetime(int(year), 1, 1), datetime(int(year) + 1, 1, 1)
    low = datetime(int(year), month, 1)
    return low, datetime(int(year) + month // 12, month % 12 + 1, 1)


def _model_issues(model: BaseModel, path: str) -> Iterator[tuple[str, str, str]]:
    issue = _datatype_issue(model)
    if issue is not None:
        yield path, issue[0], issue[1]
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        alias = field.alias or name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_values")
        values = value if isinstance(value, list) else [value]
        if isinstance(allowed, list) and allowed and "+" not in allowed:
            for item in values:
                if isinstance(item, str) and item not in allowed:
                    yield f"{path}.{alias}", "binding", "the code is not in the required value set"
        for index, item in enumerate(values):
            if isinstance(item, BaseModel):
                where = f"{path}.{alias}" + (f"[{index}]" if isinstance(value, list) else "")
                yield from _model_issues(item, where)


def _invariant_issues(
    data: dict[str, Any], resource_type: str, path: str
) -> Iterator[tuple[str, str]]:
    for key, expression, text in (
        *_DOMAIN_INVARIANTS,
        *_RESOURCE_INVARIANTS.get(resource_type, ()),
    ):
        result = _compiled(expression)(data)
        if result and result[0] is False:
            yield path, f"{key}: {text}"
    if resource_type == "Bundle":
        for index, entry in enumerate(data.get("entry", [])):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                yield from _invariant_issues(
                    resource,
                    str(resource.get("resourceType")),
                    f"{path}.entry[{index}].resource",
                )


def core_rule_issues(
    data: dict[str, Any], model: BaseModel, resource_type: str
) -> list[tuple[str, str]]:
    """(expression, text) for every base R4 rule the resource (and what it contains) breaks."""
    issues = [
        (where, "ele-1: All FHIR elements must have a @value or children")
        for where in _empty_elements(data, resource_type)
    ]
    issues += [
        (where, f"{key}: {text}") for where, key, text in _model_issues(model, resource_type)
    ]
    issues += list(_invariant_issues(data, resource_type, resource_type))
    return issues
