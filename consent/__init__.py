"""The consent policy engine: may this participant see this resource for this purpose? (pure)

``decide(requester, resource, consents, now=…)`` returns a :class:`Decision` (``permit``,
``deny`` or ``permit-with-redaction``) naming the rule and the Consent behind it, for the
gateway's AuditEvent. ``decide_write(requester, action, current, incoming)`` is the write
policy (``consent._writes``: who may create, update, delete what). No I/O: resources and
Consents are FHIR JSON dicts.

Participant kinds are on the health side (``hospital``, ``gp``, ``rehab-unit``) or the
employment side (``jobcentre``, ``employer``); the citizen portal is on neither. The gateway
stamps every stored resource with its author (:func:`stamp_author`): ``meta.source =
"urn:brobygger:participant:<name>"`` and a ``meta.tag`` of system
``http://brobygger.dk/fhir/CodeSystem/author-kind`` with the author's kind
(:func:`author_kind_of`; no tag, or an unreadable one, is an unknown kind). Where a law lets
health data reach the employment side without a consent, it also stamps a ``meta.tag`` of
system ``http://brobygger.dk/fhir/CodeSystem/legal-basis`` (``LEGAL_BASES``). Both are the
gateway's alone: :func:`strip_gateway_tags` removes them (and ``meta.source``) from a client's
input.

Rules, in order (``Decision.rule`` in brackets); the absolute rules (4, 5) bind every path
after the author's:

1. Directory and conformance resources (Organization, Practitioner, PractitionerRole, Location,
   HealthcareService, Endpoint, Questionnaire, …) are visible to every participant [directory].
2. The citizen portal sees every resource whose patient is ``requester.patient`` and nothing
   else [citizen-access / citizen-other-patient].
3. The author reads what it wrote (``meta.source`` names the requester) [author].
4. Employers (kind ``employer``), on every later path: never data labelled ``mental-health``
   [employer-mental-health]; only data labelled ``employment-relevant``
   [employer-not-employment-relevant] (a Patient, which is identity data and carries no
   labels, may still come along by rule 8; its consent path needs the label); and never a
   diagnosis, also on rules 1-3 (:func:`contains_diagnosis`): diagnostic content is removed
   (``permit-with-redaction``), and a Condition, a resource whose own ``code`` is a diagnosis,
   or a QuestionnaireResponse left without items is denied [employer-diagnosis].
5. Health → employment crossing: for an employment-side requester, a resource whose author
   kind is not employment-side (health side, the portal, or unknown — fail closed) is
   disclosed by rules 6 and 7 only under a legal basis that reaches the requester's kind
   (``LEGAL_BASES``: the kinds and resource types each opens) and only when it is not
   labelled ``mental-health``. Otherwise it needs the consent path (rule 9); when that does
   not permit it either the rule is [cross-sector-needs-consent]. Employment → employment,
   health → health and employment → health are not affected.
6. The addressee reads what was addressed to it. Addressed means EITHER a ``meta.tag`` with
   system ``http://brobygger.dk/fhir/CodeSystem/addressee`` and the participant's name as code
   (the adapters tag every resource of an addressed document: the plan, its Conditions, …) OR a
   recipient element referencing the requester's Organization: ServiceRequest.performer,
   Task.owner, Task.restriction.recipient, Communication(Request).recipient,
   Appointment.participant.actor [addressee].
7. A department reads its own records: an ownership element references its Organization
   (EpisodeOfCare.managingOrganization, DocumentReference.custodian, Encounter.serviceProvider,
   ServiceRequest/Task.requester, CarePlan.author, CareTeam.managingOrganization,
   Communication.sender) [own-department].
8. A Patient is visible when at least one other record of that patient is visible to the
   requester by a rule other than ``author`` (and ``directory``): :func:`supports_patient`.
   Writing a record about a citizen never makes what others recorded readable
   (``has_visible_record``, computed by :func:`filter_visible` for a page) [supporting].
9. Anything else needs an in-force Consent of the resource's patient (status ``active``, scope
   ``patient-privacy``, ``now`` in ``provision.period``) whose top provision applies [consent].
   A provision applies when each element it sets matches: ``actor`` (role v3-ParticipationType
   ``IRCP`` and ``reference.reference`` = the requester's Organization, or
   ``reference.identifier`` = {participant-kind system, the requester's kind}); ``purpose``
   (system+code of the requester's purpose); ``class`` (resource-types code = resource type);
   ``data`` (the resource's own reference); ``dataPeriod`` (contains the resource's clinical
   date — effective/authored/recorded/period.start…, else ``meta.lastUpdated``; undated data
   is outside every dataPeriod); ``securityLabel`` (data-category codes, see below).
   Labels: with the resource's data categories L, a provision listing P applies when P is
   unset and ``mental-health`` ∉ L, or when L is non-empty, the non-mental-health part of L is
   empty or meets P, and ``mental-health`` ∈ L implies ``mental-health`` ∈ P. Unlabelled data
   needs a provision without securityLabel. Nested provisions are exceptions where their
   parent applies; a ``deny`` that applies — in ANY in-force consent of the patient — wins
   [consent-deny-exception]; a consent that would permit but for mental-health gives
   [mental-health-not-named]; otherwise [default-deny] (or [cross-sector-needs-consent], 5).

Fail-safe: a permit provision with an element the engine cannot evaluate (``provision.code``,
a malformed period) matches nothing; a deny provision ignores it; an unknown legal-basis code
opens nothing. Call :func:`active_consents` once per request and pass the compiled consents on.
"""

from consent._codes import (
    ADDRESSEE_SYSTEM,
    AUTHOR_KIND_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    DIAGNOSIS_ITEM_LINK_IDS,
    DIAGNOSIS_SYSTEMS,
    DIRECTORY_TYPES,
    EMPLOYER_REQUESTED_STATEMENT,
    EMPLOYMENT_SIDE,
    FHIR_BASE,
    HEALTH_SIDE,
    LEGAL_BASES,
    LEGAL_BASIS_SYSTEM,
    PARTICIPANT_KIND_SYSTEM,
    PURPOSE_OF_USE_SYSTEM,
    REQUESTED_STATEMENT,
    ROUND_TABLE_INVITATION,
    LegalBasis,
)
from consent._engine import (
    ConsentLike,
    active_consents,
    decide,
    filter_visible,
    supporting_resources_visible,
    supports_patient,
)
from consent._model import (
    CompiledConsent,
    Decision,
    Effect,
    Requester,
    compile_consent,
)
from consent._redaction import contains_diagnosis, redact_diagnoses
from consent._resources import (
    author_kind_of,
    author_of,
    data_categories,
    is_addressed_to,
    legal_bases_of,
    patient_of,
    stamp_author,
    strip_gateway_tags,
)
from consent._validation import ConsentIssue, validate_consent
from consent._writes import WriteAction, WriteDecision, decide_write

__all__ = [
    "ADDRESSEE_SYSTEM",
    "AUTHOR_KIND_SYSTEM",
    "DATA_CATEGORY_SYSTEM",
    "DIAGNOSIS_ITEM_LINK_IDS",
    "DIAGNOSIS_SYSTEMS",
    "DIRECTORY_TYPES",
    "EMPLOYER_REQUESTED_STATEMENT",
    "EMPLOYMENT_SIDE",
    "FHIR_BASE",
    "HEALTH_SIDE",
    "LEGAL_BASES",
    "LEGAL_BASIS_SYSTEM",
    "PARTICIPANT_KIND_SYSTEM",
    "PURPOSE_OF_USE_SYSTEM",
    "REQUESTED_STATEMENT",
    "ROUND_TABLE_INVITATION",
    "CompiledConsent",
    "ConsentIssue",
    "ConsentLike",
    "Decision",
    "Effect",
    "LegalBasis",
    "Requester",
    "WriteAction",
    "WriteDecision",
    "active_consents",
    "author_kind_of",
    "author_of",
    "compile_consent",
    "contains_diagnosis",
    "data_categories",
    "decide",
    "decide_write",
    "filter_visible",
    "is_addressed_to",
    "legal_bases_of",
    "patient_of",
    "redact_diagnoses",
    "stamp_author",
    "strip_gateway_tags",
    "supporting_resources_visible",
    "supports_patient",
    "validate_consent",
]
