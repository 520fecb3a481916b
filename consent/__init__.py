"""The consent policy engine: may this participant see this resource for this purpose? (pure)

``decide(requester, resource, consents, now=…)`` returns a :class:`Decision` (``permit``,
``deny`` or ``permit-with-redaction``) naming the rule and the Consent behind it, for the
gateway's AuditEvent. No I/O: resources and Consents are FHIR JSON dicts.

Rules, in order (``Decision.rule`` in brackets):

1. Directory and conformance resources (Organization, Practitioner, PractitionerRole, Location,
   HealthcareService, Endpoint, Questionnaire, …) are visible to every participant [directory].
2. The citizen portal sees every resource whose patient is ``requester.patient`` and nothing
   else [citizen-access / citizen-other-patient].
3. The author reads what it wrote: ``meta.source == "urn:brobygger:participant:<name>"``, which
   the gateway stamps on every stored resource (:func:`stamp_author`) [author].
4. The addressee reads what was addressed to it. Addressed means EITHER a ``meta.tag`` with
   system ``http://brobygger.dk/fhir/CodeSystem/addressee`` and the participant's name as code
   (the adapters tag every resource of an addressed document: the plan, its Conditions, …) OR a
   recipient element referencing the requester's Organization: ServiceRequest.performer,
   Task.owner, Task.restriction.recipient, Communication(Request).recipient,
   Appointment.participant.actor [addressee].
5. A department reads its own records: an ownership element references its Organization
   (EpisodeOfCare.managingOrganization, DocumentReference.custodian, Encounter.serviceProvider,
   ServiceRequest/Task.requester, CarePlan.author, Communication.sender) [own-department].
6. A Patient is visible when at least one other resource of that patient is visible to the
   requester (``has_visible_record``, computed by :func:`filter_visible` for a page) [supporting].
7. Anything else needs an in-force Consent of the resource's patient (status ``active``, scope
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
   [mental-health-not-named]; otherwise [default-deny].
8. Employers (kind ``employer``): on the consent path only data labelled
   ``employment-relevant`` [employer-not-employment-relevant]; on every path never a diagnosis
   (:func:`contains_diagnosis`): diagnostic content is removed (``permit-with-redaction``), and
   a Condition, a resource whose own ``code`` is a diagnosis, or a QuestionnaireResponse left
   without items is denied [employer-diagnosis].

Fail-safe: a permit provision with an element the engine cannot evaluate (``provision.code``,
a malformed period) matches nothing; a deny provision ignores it. Call :func:`active_consents`
once per request and pass the compiled consents on.
"""

from consent._codes import (
    ADDRESSEE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    DIAGNOSIS_ITEM_LINK_IDS,
    DIAGNOSIS_SYSTEMS,
    DIRECTORY_TYPES,
    FHIR_BASE,
    PARTICIPANT_KIND_SYSTEM,
    PURPOSE_OF_USE_SYSTEM,
)
from consent._engine import (
    ConsentLike,
    active_consents,
    decide,
    filter_visible,
    supporting_resources_visible,
)
from consent._model import (
    CompiledConsent,
    Decision,
    Effect,
    Requester,
    compile_consent,
)
from consent._redaction import contains_diagnosis, redact_diagnoses
from consent._resources import author_of, data_categories, patient_of, stamp_author
from consent._validation import ConsentIssue, validate_consent

__all__ = [
    "ADDRESSEE_SYSTEM",
    "DATA_CATEGORY_SYSTEM",
    "DIAGNOSIS_ITEM_LINK_IDS",
    "DIAGNOSIS_SYSTEMS",
    "DIRECTORY_TYPES",
    "FHIR_BASE",
    "PARTICIPANT_KIND_SYSTEM",
    "PURPOSE_OF_USE_SYSTEM",
    "CompiledConsent",
    "ConsentIssue",
    "ConsentLike",
    "Decision",
    "Effect",
    "Requester",
    "active_consents",
    "author_of",
    "compile_consent",
    "contains_diagnosis",
    "data_categories",
    "decide",
    "filter_visible",
    "patient_of",
    "redact_diagnoses",
    "stamp_author",
    "supporting_resources_visible",
    "validate_consent",
]
