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
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from profiles import fhir_json
from profiles._base_r4 import validate_base
from profiles._r4_definitions import is_resource

FHIR_VERSION = "4.0.1"

# The resource types the gateway stores and serves (CapabilityStatement lists exactly these).
SUPPORTED_TYPES: tuple[str, ...] = (
    "Appointment",
    "AuditEvent",
    "Binary",
    "CarePlan",
    "CareTeam",
    "Communication",
    "Condition",
    "Consent",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "Goal",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RiskAssessment",
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


# --- FHIR XML ------------------------------------------------------------------------------
# fhir.resources 8 reads FHIR XML itself (``model_validate_xml``, built on lxml): the element
# order, ``value`` attributes, the xhtml narrative and nested resources are its work, not
# ours. We only hand it a hardened parser: no DTD, no entities, no network, no huge trees.


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


def _hardened_parser() -> Any:
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def resource_from_xml(raw: bytes) -> dict[str, Any]:
    """A FHIR R4 resource in XML (``application/fhir+xml``) as wire JSON.

    Raises ``ResourceInvalid``: not well-formed (the line, never the content), a DOCTYPE or
    entity declaration, an unknown root, or a resource the R4 models refuse (element paths).
    """
    from lxml import etree

    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise ResourceInvalid(
            [ResourceIssue("/", "a DOCTYPE or ENTITY declaration is not allowed")]
        )
    parser = _hardened_parser()
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "unknown position"
        raise ResourceInvalid([ResourceIssue("/", f"not well-formed XML (at {where})")]) from exc
    except ValueError as exc:
        raise ResourceInvalid([ResourceIssue("/", "not a readable XML document")]) from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ResourceInvalid(
            [ResourceIssue("/", "a DOCTYPE or ENTITY declaration is not allowed")]
        )
    qname = etree.QName(root)
    if qname.namespace != "http://hl7.org/fhir" or not is_resource_type(qname.localname):
        raise ResourceInvalid(
            [ResourceIssue("/", "the root is not a FHIR resource (namespace http://hl7.org/fhir)")]
        )
    model = _model_class(qname.localname)
    try:
        parsed = model.model_validate_xml(etree.tostring(root), xmlparser=_hardened_parser())
    except ValidationError as exc:
        issues = [
            ResourceIssue(_location(qname.localname, tuple(err["loc"])), err["msg"])
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ResourceInvalid(_entry_issues(root) or issues) from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise ResourceInvalid(
            _entry_issues(root) or [ResourceIssue(qname.localname, "not readable as FHIR R4 XML")]
        ) from exc
    # fhir_json keeps the decimals' text as the model writes it (the XML reader may already
    # have normalised them: exact decimals are guaranteed for JSON input).
    dumped: dict[str, Any] = fhir_json.loads(parsed.model_dump_json())
    return dumped


def _entry_issues(root: Any) -> list[ResourceIssue]:
    """A Bundle's entries one by one: the models' XML reader stops at the first broken entry,
    and a sender wants every missing element named at once."""
    from lxml import etree

    ns = {"f": "http://hl7.org/fhir"}
    if etree.QName(root).localname != "Bundle":
        return []
    found: list[ResourceIssue] = []
    for index, entry in enumerate(root.xpath("f:entry", namespaces=ns)):
        for resource in entry.xpath("f:resource/*", namespaces=ns):
            try:
                resource_from_xml(etree.tostring(resource))
            except ResourceInvalid as exc:
                prefix = f"Bundle.entry[{index}].resource"
                for issue in exc.issues:
                    name = etree.QName(resource).localname
                    rest = issue.expression.removeprefix(name)
                    found.append(ResourceIssue(prefix + rest, issue.message))
    return found


def message_identity_from_xml(raw: bytes) -> tuple[str, dict[str, Any] | None]:
    """(MessageHeader.id, the Provenance that targets it) of a FHIR message Bundle in XML,
    read without modelling the whole Bundle: a message the models refuse is still
    acknowledged by its id and carries its Provenance back. ("", None) when not found."""
    from lxml import etree

    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        return "", None
    try:
        root = etree.fromstring(raw, _hardened_parser())
    except (etree.XMLSyntaxError, ValueError):
        return "", None
    ns = {"f": "http://hl7.org/fhir"}
    found = root.xpath("/f:Bundle/f:entry[1]/f:resource/f:MessageHeader/f:id/@value", namespaces=ns)
    header_id = str(found[0]) if isinstance(found, list) and found else ""
    if not header_id:
        return "", None
    for node in root.xpath("/f:Bundle/f:entry/f:resource/f:Provenance", namespaces=ns):
        targets = node.xpath("f:target/f:reference/@value", namespaces=ns)
        if any(str(t).endswith(f"MessageHeader/{header_id}") for t in targets):
            try:
                return header_id, resource_from_xml(etree.tostring(node))
            except ResourceInvalid:
                return header_id, None
    return header_id, None
