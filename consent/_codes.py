"""Code systems, codes and element lists the consent engine relies on (exact contract strings).

The systems are those of ``formats/identifiers.md``; the project's own ones hang off
:data:`FHIR_BASE`, the one place in ``consent/`` that spells the base URL.
"""

from __future__ import annotations

from typing import Final, NamedTuple

FHIR_BASE: Final = "http://brobygger.dk/fhir"

PURPOSE_OF_USE_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/purpose-of-use"
DATA_CATEGORY_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/data-category"
PARTICIPANT_KIND_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/participant-kind"
ADDRESSEE_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/addressee"
# meta.tag systems only the gateway writes (consent.strip_gateway_tags removes them from client
# input): the kind of the participant named in meta.source, and the legal basis of a disclosure.
AUTHOR_KIND_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/author-kind"
LEGAL_BASIS_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/legal-basis"
AUTHOR_SOURCE_PREFIX: Final = "urn:brobygger:participant:"

ACT_REASON_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONSENT_SCOPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
RESOURCE_TYPES_SYSTEM: Final = "http://hl7.org/fhir/resource-types"

PATIENT_PRIVACY: Final = "patient-privacy"
RECIPIENT_ROLE: Final = "IRCP"  # v3-ParticipationType "information recipient"

SICKNESS_BENEFIT_FOLLOW_UP: Final = "sickness-benefit-follow-up"
REHABILITATION_PLANNING: Final = "rehabilitation-planning"
ROUND_TABLE_MEETING: Final = "round-table-meeting"
MEDICAL_STATEMENT: Final = "medical-statement"
CITIZEN_ACCESS: Final = "citizen-access"

# Purpose code → its system; the codes are unique across both systems (as in gateway.auth).
PURPOSES: Final[dict[str, str]] = {
    SICKNESS_BENEFIT_FOLLOW_UP: PURPOSE_OF_USE_SYSTEM,
    REHABILITATION_PLANNING: PURPOSE_OF_USE_SYSTEM,
    ROUND_TABLE_MEETING: PURPOSE_OF_USE_SYSTEM,
    MEDICAL_STATEMENT: PURPOSE_OF_USE_SYSTEM,
    CITIZEN_ACCESS: PURPOSE_OF_USE_SYSTEM,
    "TREAT": ACT_REASON_SYSTEM,
    "HOPERAT": ACT_REASON_SYSTEM,
}

REHAB_PLAN: Final = "rehab-plan"
REHAB_PROGRESS: Final = "rehab-progress"
SICKNESS_BENEFIT_CASE: Final = "sickness-benefit-case"
EMPLOYMENT_RELEVANT: Final = "employment-relevant"
MENTAL_HEALTH: Final = "mental-health"
DATA_CATEGORIES: Final = frozenset(
    {
        REHAB_PLAN,
        MEDICAL_STATEMENT,
        REHAB_PROGRESS,
        SICKNESS_BENEFIT_CASE,
        EMPLOYMENT_RELEVANT,
        MENTAL_HEALTH,
    }
)

HOSPITAL: Final = "hospital"
GP: Final = "gp"
REHAB_UNIT: Final = "rehab-unit"
JOBCENTRE: Final = "jobcentre"
EMPLOYER: Final = "employer"
CITIZEN_PORTAL: Final = "citizen-portal"
PARTICIPANT_KINDS: Final = frozenset(
    {HOSPITAL, GP, REHAB_UNIT, JOBCENTRE, EMPLOYER, CITIZEN_PORTAL}
)
# The two sides of the bridge. Health data crosses to the employment side only under a consent
# or a legal basis; the citizen portal is on neither side.
HEALTH_SIDE: Final = frozenset({HOSPITAL, GP, REHAB_UNIT})
EMPLOYMENT_SIDE: Final = frozenset({JOBCENTRE, EMPLOYER})
# The shared plan (docs/shared-plan.md): its codes, and what marks a Task as a plan activity.
COORDINATION_PLAN_SYSTEM: Final = f"{FHIR_BASE}/CodeSystem/coordination-plan"
PLAN_ACTIVITY: Final = "plan-activity"
# The category (code) of the plan and its team, in care-plan-category / coordination-plan.
COORDINATED_RETURN: Final = "coordinated-return-to-work"
# What the citizen portal writes besides its citizen's consents: the citizen's own goals and
# comments on the plan (authored by the citizen, about the citizen).
CITIZEN_AUTHORED_TYPES: Final = frozenset({"Goal", "Communication"})
# Who may record a Consent (the citizen portal only for its own citizen).
CONSENT_RECORDER_KINDS: Final = frozenset({JOBCENTRE, REHAB_UNIT, CITIZEN_PORTAL})


class LegalBasis(NamedTuple):
    """What a legal-basis tag opens: the addressee / own-department paths, for these kinds."""

    reaches: frozenset[str]  # requester kinds (employment side) it lets the data reach
    resource_types: frozenset[str] | None  # the resource types it may be stamped on; None: any


# Legal bases (docs/consent.md "Legal bases"): health-side data addressed to an employment-side
# participant reaches it without a consent only under one of these, stamped by the gateway.
REQUESTED_STATEMENT: Final = "requested-statement"
EMPLOYER_REQUESTED_STATEMENT: Final = "employer-requested-statement"
ROUND_TABLE_INVITATION: Final = "round-table-invitation"
LEGAL_BASES: Final[dict[str, LegalBasis]] = {
    # A medical statement (LÆ 285, LÆ 125) answering the job centre's own request.
    REQUESTED_STATEMENT: LegalBasis(frozenset({JOBCENTRE}), None),
    # A mulighedserklæring the employer requested (sygedagpengeloven §36 a).
    EMPLOYER_REQUESTED_STATEMENT: LegalBasis(frozenset({EMPLOYER}), None),
    # The round-table invitation and the answers to it: a time and a place, no health content.
    ROUND_TABLE_INVITATION: LegalBasis(
        frozenset({JOBCENTRE, EMPLOYER}), frozenset({"Appointment", "AppointmentResponse"})
    ),
}

# Diagnosis code systems (identifiers.md): SKS-D, SKS as a whole, WHO ICD-10.
DIAGNOSIS_SYSTEMS: Final = frozenset(
    {
        "urn:oid:1.2.208.176.2.4.12",
        "urn:oid:1.2.208.176.2.4",
        "http://hl7.org/fhir/sid/icd-10",
    }
)

# QuestionnaireResponse items that hold diagnoses, per form (formats/gp-statement.md: "2.1
# diagnoses" on LÆ 285 and LÆ 125; on the Mulighedserklæring 2.1 is functional limitations, so
# the item ids are looked up per form). The form is the last path segment of
# QuestionnaireResponse.questionnaire, version dropped, upper-cased, non-alphanumerics removed,
# and matched by suffix (".../Questionnaire/lae-285|1.0" → "LAE285").
DIAGNOSIS_ITEM_LINK_IDS: Final[dict[str, frozenset[str]]] = {
    "LAE285": frozenset({"2.1"}),
    "LAE125": frozenset({"2.1"}),
}

# Elements that state why something is done: in this domain the reason is the diagnosis, so an
# employer never receives them, whatever system their codes use.
DIAGNOSIS_ELEMENTS: Final = frozenset({"reasonCode", "reasonReference", "diagnosis", "addresses"})

# Directory and conformance resources: not health data, readable by every authenticated
# participant (the Organization / Practitioner "needed to read" a record).
DIRECTORY_TYPES: Final = frozenset(
    {
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "HealthcareService",
        "Endpoint",
        "Questionnaire",
        "StructureDefinition",
        "CodeSystem",
        "ValueSet",
        "CapabilityStatement",
        "SearchParameter",
        "OperationDefinition",
    }
)

# The element naming the participant (Organization) a directory resource describes; only that
# participant changes it (consent.decide_write). Organization describes itself.
DESCRIBING_ELEMENTS: Final[dict[str, str]] = {
    "PractitionerRole": "organization",
    "Location": "managingOrganization",
    "Endpoint": "managingOrganization",
    "HealthcareService": "providedBy",
}
