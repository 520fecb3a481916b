"""The search parameters the gateway supports, per resource type, and how to index them.

The table is generated from HL7's official R4 SearchParameters (``profiles`` ships them with
the R4 definitions): ``SUPPORTED`` pins which ones we serve, and each one's type and paths come
from its registry entry — the FHIRPath ``expression`` turned into dotted JSON paths (a choice
element becomes its JSON names: ``Observation.effective`` → ``effectiveDateTime``,
``effectivePeriod``, …; ``.where(resolve() is Patient)`` becomes ``targets``). ``OWN`` holds the
few parameters of ours that R4 does not define; ``KIND_OVERRIDES`` the deliberate differences.
A path is a dotted walk from the resource root; lists are flattened on the way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from profiles import element_json_names, official_search_parameters

Kind = Literal["token", "string", "date", "reference", "uri"]


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    kind: Kind
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    definition: str | None = None  # the canonical URL of HL7's SearchParameter, when it is one


# Which of HL7's R4 search parameters the gateway serves, per resource type (pinned).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "Patient": (
        "identifier", "name", "family", "given", "birthdate", "gender", "active",
        "address-city", "organization", "general-practitioner",
    ),
    "Organization": ("identifier", "name", "type", "active", "partof"),
    "Practitioner": ("identifier", "name", "family", "given", "active"),
    "PractitionerRole": (
        "identifier", "practitioner", "organization", "role", "specialty", "active",
    ),
    "Condition": (
        "identifier", "code", "subject", "patient", "encounter", "category", "clinical-status",
        "verification-status", "onset-date", "recorded-date", "asserter",
    ),
    "Observation": (
        "identifier", "code", "subject", "patient", "encounter", "category", "status", "date",
        "performer", "based-on", "part-of", "focus", "derived-from", "value-concept",
    ),
    "ServiceRequest": (
        "identifier", "code", "subject", "patient", "encounter", "status", "intent",
        "category", "requester", "performer", "authored", "based-on", "replaces",
        "requisition", "occurrence",
    ),
    "Task": (
        "identifier", "code", "status", "business-status", "intent", "subject", "patient",
        "focus", "owner", "requester", "based-on", "part-of", "encounter", "authored-on",
        "modified", "period",
    ),
    "QuestionnaireResponse": (
        "identifier", "questionnaire", "subject", "patient", "status", "authored", "author",
        "source", "based-on", "part-of", "encounter",
    ),
    "Questionnaire": ("identifier", "url", "version", "name", "title", "status"),
    "EpisodeOfCare": (
        "identifier", "patient", "organization", "status", "type", "date", "care-manager",
        "condition", "incoming-referral",
    ),
    "Encounter": (
        "identifier", "subject", "patient", "status", "class", "type", "date",
        "service-provider", "episode-of-care", "participant", "based-on", "reason-code",
    ),
    "CarePlan": (
        "identifier", "subject", "patient", "status", "intent", "category", "date", "based-on",
        "part-of", "replaces", "encounter", "activity-code", "care-team", "goal",
    ),
    # The shared plan's parts (docs/shared-plan.md).
    "CareTeam": (
        "identifier", "subject", "patient", "status", "category", "date", "participant",
    ),
    "Goal": (
        "identifier", "subject", "patient", "lifecycle-status", "achievement-status",
        "category", "start-date", "target-date",
    ),
    "DocumentReference": (
        "identifier", "subject", "patient", "status", "type", "category", "date", "author",
        "custodian", "relatesto", "contenttype", "security-label",
    ),
    "Provenance": ("target", "patient", "agent", "entity", "recorded"),
    "AuditEvent": (
        "date", "agent", "entity", "patient", "type", "subtype", "action", "outcome", "source",
    ),
    "Consent": (
        "identifier", "patient", "status", "scope", "category", "date", "organization",
        "consentor", "actor", "purpose", "security-label", "period", "action",
        "source-reference",
    ),
    "Communication": (
        "identifier", "subject", "patient", "status", "category", "sender", "recipient",
        "sent", "received", "based-on", "part-of", "encounter",
    ),
    "Appointment": (
        "identifier", "status", "date", "actor", "patient", "practitioner", "service-type",
        "appointment-type", "based-on", "reason-reference",
    ),
    "RiskAssessment": (
        "identifier", "subject", "patient", "encounter", "date", "performer", "risk",
    ),
    "Binary": (),
}  # fmt: skip

# Every resource type also has these (besides _id and _lastUpdated, which live on the row).
SUPPORTED_COMMON: tuple[str, ...] = ("_tag", "_security", "_profile")

# Parameters of ours that R4 does not define.
OWN: dict[str, tuple[SearchParam, ...]] = {
    # A deadline Task's due date (deadline-task profile: restriction.period.end).
    "Task": (SearchParam("due", "date", ("restriction.period",)),),
    "CarePlan": (SearchParam("author", "reference", ("author",)),),
    "Provenance": (SearchParam("activity", "token", ("activity",)),),
    # R5 defines AuditEvent?purpose; R4 does not. The consent audit is searched by it.
    "AuditEvent": (SearchParam("purpose", "token", ("purposeOfEvent", "agent.purposeOfUse")),),
}

# Deliberate differences from the registry, and why.
KIND_OVERRIDES: dict[tuple[str, str], Kind] = {
    # R4 types it "reference" to a canonical; canonicals are matched as URIs here.
    ("QuestionnaireResponse", "questionnaire"): "uri",
}
# AuditEvent?patient: R4 also looks at agent.who; the audit trail names the patient as entity.
PATH_OVERRIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("AuditEvent", "patient"): ("entity.what",),
    # Our worklists: besides R4's executionPeriod, Task?period indexes the due date
    # (restriction.period.end), so ``period=le…&_sort=period`` is "due by …, soonest first"
    # (docs/coordination.md).
    ("Task", "period"): ("executionPeriod", "restriction.period.end"),
}

# Types a kind cannot index (a Timing has no single range), left out of the paths.
_UNINDEXABLE: dict[str, frozenset[str]] = {
    "date": frozenset({"Timing", "Age", "Range", "string", "Duration"}),
    "reference": frozenset({"Attachment", "canonical", "uri", "Identifier"}),
}
_WHERE_TARGET = re.compile(r"\.where\(resolve\(\) is ([A-Za-z]+)\)$")
_AS_CALL = re.compile(r"\.(?:as|ofType)\(([A-Za-z]+)\)$")
_AS_OPERATOR = re.compile(r"^(.+) as ([A-Za-z]+)$")


def _parts(expression: str, resource_type: str) -> Iterator[tuple[str, str | None, str | None]]:
    """(element path below the type, as-type, resolve target) of each ``|`` alternative."""
    for raw in expression.split("|"):
        part = raw.strip()
        while part.startswith("(") and part.endswith(")"):
            part = part[1:-1].strip()
        as_type = target = None
        operator = _AS_OPERATOR.match(part)
        if operator:
            part, as_type = operator.group(1).strip(), operator.group(2)
        where = _WHERE_TARGET.search(part)
        if where:
            part, target = part[: where.start()], where.group(1)
        call = _AS_CALL.search(part)
        if call:
            part, as_type = part[: call.start()], call.group(1)
        for prefix in (f"{resource_type}.", "Resource."):
            if part.startswith(prefix):
                yield part[len(prefix) :], as_type, target


def _official(resource_type: str, code: str) -> Mapping[str, Any]:
    for parameter in official_search_parameters():
        if parameter["code"] == code and (
            resource_type in parameter["base"] or "Resource" in parameter["base"]
        ):
            return parameter
    raise LookupError(f"R4 defines no search parameter {resource_type}?{code}")


def generate(resource_type: str, code: str) -> SearchParam:
    """Our ``SearchParam`` for HL7's R4 search parameter ``code`` on ``resource_type``."""
    official = _official(resource_type, code)
    kind: Kind = KIND_OVERRIDES.get((resource_type, code), official["type"])
    if kind not in ("token", "string", "date", "reference", "uri"):
        raise ValueError(f"{resource_type}?{code}: type {kind} is not indexed here")
    paths: list[str] = []
    targets: list[str] = []
    for path, as_type, target in _parts(official.get("expression", ""), resource_type):
        for json_path, type_code in element_json_names(resource_type, path, as_type):
            if type_code not in _UNINDEXABLE.get(kind, frozenset()):
                paths.append(json_path)
        if target:
            targets.append(target)
    chosen = PATH_OVERRIDES.get((resource_type, code), tuple(dict.fromkeys(paths)))
    if not chosen:
        raise ValueError(f"{resource_type}?{code}: no indexable path in {official['expression']}")
    return SearchParam(code, kind, chosen, tuple(dict.fromkeys(targets)), official.get("url"))


@cache
def _table() -> dict[str, dict[str, SearchParam]]:
    table: dict[str, dict[str, SearchParam]] = {}
    for resource_type, codes in SUPPORTED.items():
        found = [generate(resource_type, c) for c in (*codes, *SUPPORTED_COMMON)]
        found += OWN.get(resource_type, ())
        table[resource_type] = {p.name: p for p in found}
    return table


PATIENT = ("Patient",)
SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = _table()
COMMON: tuple[SearchParam, ...] = tuple(SEARCH_PARAMS["Patient"][c] for c in SUPPORTED_COMMON)

# Parameters handled by the search engine itself, not by the index.
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_include",
        "_revinclude",
        "_total",
        "_summary",
        "_format",
        "_pretty",
        "_elements",
    }
)


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return SEARCH_PARAMS.get(resource_type, {})


def walk(node: Any, path: str) -> Iterator[Any]:
    """Yield every value at a dotted ``path`` below ``node``, flattening lists."""
    values: list[Any] = [node]
    for segment in path.split("."):
        next_values: list[Any] = []
        for value in values:
            if isinstance(value, dict) and segment in value:
                child = value[segment]
                if isinstance(child, list):
                    next_values.extend(child)
                else:
                    next_values.append(child)
        values = next_values
        if not values:
            return
    yield from values
