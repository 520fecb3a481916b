"""The search parameters the gateway supports, per resource type, and how to index them.

Names, types and paths follow the FHIR R4 search parameter registry
(http://hl7.org/fhir/R4/searchparameter-registry.html) for the resources we serve. A path is
a dotted walk from the resource root; lists are flattened on the way. ``targets`` restricts a
reference parameter to some target types (``patient`` is ``subject`` where it is a Patient).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["token", "string", "date", "reference", "uri"]


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    kind: Kind
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()


def _p(name: str, kind: Kind, *paths: str, targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, kind, paths or (name,), targets)


PATIENT = ("Patient",)

# Parameters every resource type has (besides _id and _lastUpdated, which live on the row).
COMMON: tuple[SearchParam, ...] = (
    _p("_tag", "token", "meta.tag"),
    _p("_security", "token", "meta.security"),
    _p("_profile", "uri", "meta.profile"),
)

_DEFINITIONS: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        _p("identifier", "token"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("birthdate", "date", "birthDate"),
        _p("gender", "token"),
        _p("active", "token"),
        _p("address-city", "string", "address.city"),
        _p("organization", "reference", "managingOrganization"),
        _p("general-practitioner", "reference", "generalPractitioner"),
    ),
    "Organization": (
        _p("identifier", "token"),
        _p("name", "string", "name", "alias"),
        _p("type", "token"),
        _p("active", "token"),
        _p("partof", "reference", "partOf"),
    ),
    "Practitioner": (
        _p("identifier", "token"),
        _p("name", "string", "name"),
        _p("family", "string", "name.family"),
        _p("given", "string", "name.given"),
        _p("active", "token"),
    ),
    "PractitionerRole": (
        _p("identifier", "token"),
        _p("practitioner", "reference"),
        _p("organization", "reference"),
        _p("role", "token", "code"),
        _p("specialty", "token"),
        _p("active", "token"),
    ),
    "Condition": (
        _p("identifier", "token"),
        _p("code", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("encounter", "reference"),
        _p("category", "token"),
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"),
        _p("onset-date", "date", "onsetDateTime", "onsetPeriod"),
        _p("recorded-date", "date", "recordedDate"),
        _p("asserter", "reference"),
    ),
    "Observation": (
        _p("identifier", "token"),
        _p("code", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("encounter", "reference"),
        _p("category", "token"),
        _p("status", "token"),
        _p("date", "date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        _p("performer", "reference"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("focus", "reference"),
        _p("derived-from", "reference", "derivedFrom"),
        _p("value-concept", "token", "valueCodeableConcept"),
    ),
    "ServiceRequest": (
        _p("identifier", "token"),
        _p("code", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("encounter", "reference"),
        _p("status", "token"),
        _p("intent", "token"),
        _p("category", "token"),
        _p("requester", "reference"),
        _p("performer", "reference"),
        _p("authored", "date", "authoredOn"),
        _p("based-on", "reference", "basedOn"),
        _p("replaces", "reference"),
        _p("requisition", "token"),
        _p("occurrence", "date", "occurrenceDateTime", "occurrencePeriod"),
    ),
    "Task": (
        _p("identifier", "token"),
        _p("code", "token"),
        _p("status", "token"),
        _p("business-status", "token", "businessStatus"),
        _p("intent", "token"),
        _p("subject", "reference", "for"),
        _p("patient", "reference", "for", targets=PATIENT),
        _p("focus", "reference"),
        _p("owner", "reference"),
        _p("requester", "reference"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("encounter", "reference"),
        _p("authored-on", "date", "authoredOn"),
        _p("modified", "date", "lastModified"),
        # Our worklists: besides the registry's executionPeriod, ``period`` indexes the due
        # date (restriction.period.end), so ``period=le…&_sort=period`` is "due by …, soonest
        # first" (docs/coordination.md).
        _p("period", "date", "executionPeriod", "restriction.period.end"),
        _p("due", "date", "restriction.period"),
    ),
    "QuestionnaireResponse": (
        _p("identifier", "token"),
        _p("questionnaire", "uri"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("status", "token"),
        _p("authored", "date"),
        _p("author", "reference"),
        _p("source", "reference"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("encounter", "reference"),
    ),
    "Questionnaire": (
        _p("identifier", "token"),
        _p("url", "uri"),
        _p("version", "token"),
        _p("name", "string"),
        _p("title", "string"),
        _p("status", "token"),
    ),
    "EpisodeOfCare": (
        _p("identifier", "token"),
        _p("patient", "reference"),
        _p("organization", "reference", "managingOrganization"),
        _p("status", "token"),
        _p("type", "token"),
        _p("date", "date", "period"),
        _p("care-manager", "reference", "careManager"),
        _p("condition", "reference", "diagnosis.condition"),
        _p("incoming-referral", "reference", "referralRequest"),
    ),
    "Encounter": (
        _p("identifier", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("status", "token"),
        _p("class", "token"),
        _p("type", "token"),
        _p("date", "date", "period"),
        _p("service-provider", "reference", "serviceProvider"),
        _p("episode-of-care", "reference", "episodeOfCare"),
        _p("participant", "reference", "participant.individual"),
        _p("based-on", "reference", "basedOn"),
        _p("reason-code", "token", "reasonCode"),
    ),
    "CarePlan": (
        _p("identifier", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("status", "token"),
        _p("intent", "token"),
        _p("category", "token"),
        _p("date", "date", "period"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("replaces", "reference"),
        _p("encounter", "reference"),
        _p("author", "reference"),
        _p("activity-code", "token", "activity.detail.code"),
        _p("care-team", "reference", "careTeam"),
        _p("goal", "reference"),
    ),
    # The shared plan's parts (docs/shared-plan.md).
    "CareTeam": (
        _p("identifier", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("status", "token"),
        _p("category", "token"),
        _p("date", "date", "period"),
        _p("participant", "reference", "participant.member"),
    ),
    "Goal": (
        _p("identifier", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("lifecycle-status", "token", "lifecycleStatus"),
        _p("achievement-status", "token", "achievementStatus"),
        _p("category", "token"),
        _p("start-date", "date", "startDate"),
        _p("target-date", "date", "target.dueDate"),
    ),
    "DocumentReference": (
        _p("identifier", "token", "masterIdentifier", "identifier"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("status", "token"),
        _p("type", "token"),
        _p("category", "token"),
        _p("date", "date"),
        _p("author", "reference"),
        _p("custodian", "reference"),
        _p("relatesto", "reference", "relatesTo.target"),
        _p("contenttype", "token", "content.attachment.contentType"),
        _p("security-label", "token", "securityLabel"),
    ),
    "Provenance": (
        _p("target", "reference"),
        _p("patient", "reference", "target", targets=PATIENT),
        _p("agent", "reference", "agent.who"),
        _p("entity", "reference", "entity.what"),
        _p("recorded", "date"),
        _p("activity", "token"),
    ),
    "AuditEvent": (
        _p("date", "date", "recorded"),
        _p("agent", "reference", "agent.who"),
        _p("entity", "reference", "entity.what"),
        _p("patient", "reference", "entity.what", targets=PATIENT),
        _p("type", "token"),
        _p("subtype", "token"),
        _p("action", "token"),
        _p("outcome", "token"),
        _p("source", "reference", "source.observer"),
        _p("purpose", "token", "purposeOfEvent", "agent.purposeOfUse"),
    ),
    "Consent": (
        _p("identifier", "token"),
        _p("patient", "reference"),
        _p("status", "token"),
        _p("scope", "token"),
        _p("category", "token"),
        _p("date", "date", "dateTime"),
        _p("organization", "reference"),
        _p("consentor", "reference", "performer"),
        _p("actor", "reference", "provision.actor.reference"),
        _p("purpose", "token", "provision.purpose"),
        _p("security-label", "token", "provision.securityLabel"),
        _p("period", "date", "provision.period"),
        _p("action", "token", "provision.action"),
        _p("source-reference", "reference", "sourceReference"),
    ),
    "Communication": (
        _p("identifier", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("status", "token"),
        _p("category", "token"),
        _p("sender", "reference"),
        _p("recipient", "reference"),
        _p("sent", "date"),
        _p("received", "date"),
        _p("based-on", "reference", "basedOn"),
        _p("part-of", "reference", "partOf"),
        _p("encounter", "reference"),
    ),
    "Appointment": (
        _p("identifier", "token"),
        _p("status", "token"),
        _p("date", "date", "start"),
        _p("actor", "reference", "participant.actor"),
        _p("patient", "reference", "participant.actor", targets=PATIENT),
        _p("practitioner", "reference", "participant.actor", targets=("Practitioner",)),
        _p("service-type", "token", "serviceType"),
        _p("appointment-type", "token", "appointmentType"),
        _p("based-on", "reference", "basedOn"),
        _p("reason-reference", "reference", "reasonReference"),
    ),
    "RiskAssessment": (
        _p("identifier", "token"),
        _p("subject", "reference"),
        _p("patient", "reference", "subject", targets=PATIENT),
        _p("encounter", "reference"),
        _p("status", "token"),
        _p("code", "token"),
        _p("date", "date", "occurrenceDateTime", "occurrencePeriod"),
        _p("performer", "reference"),
        _p("risk", "token", "prediction.qualitativeRisk"),
    ),
    "Binary": (),
}

SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = {
    rtype: {p.name: p for p in (*params, *COMMON)} for rtype, params in _DEFINITIONS.items()
}

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
