"""The write policy: may this participant create, update or delete this resource? (pure)

``decide_write(requester, action, current, incoming, registered_identifiers=…)`` returns a
:class:`WriteDecision`. The gateway asks it for every row it changes — REST, Bundle entries,
messages, ingest — after it has checked that the caller may *see* the current version (a
hidden resource is a 404 before this is asked). Rules, in order (``WriteDecision.rule``):

1. AuditEvents are written by the gateway only: nobody creates, updates or deletes one
   [append-only].
2. Our own definitional resources — any resource whose ``url`` starts with ``FHIR_BASE``
   (profiles, Questionnaires, CodeSystems, …) — are changed, and created, only by the operator
   (the CLI, which does not ask this function) [operator-only].
3. The citizen portal writes nothing but Consents of its own citizen (``requester.patient``)
   [citizen-own]: it records them, updates those it recorded, and withdraws any of them —
   an update to ``status: inactive`` that changes nothing else, or a delete
   [consent-recorder]. Besides, on the shared plan, the citizen's own goals and comments
   (``CITIZEN_AUTHORED_TYPES``: Goal, Communication about its own citizen): it creates them,
   and changes or deletes only those it wrote [citizen-own].
4. Consents are recorded (created) only by a job centre or a rehabilitation unit (and the
   portal), and updated or deleted only by their author [consent-recorder]. That the recorder
   already holds a record of the citizen needs the database: the gateway checks it.
5. Organizations are changed (updated, deleted) only by the participant they are
   (``Organization/<id>`` is the requester's Organization, before and after). PractitionerRole,
   Location, Endpoint and HealthcareService are changed only by the participant they name
   (``organization`` / ``managingOrganization`` / ``providedBy`` is the requester's
   Organization, in the current and the new version); when they name none, and for the other
   directory types (Practitioner, a Questionnaire or CodeSystem of someone else, …), by their
   author [directory-self / directory-other]. Anyone may create directory resources.
6. A participant's registered identifiers (``registered_identifiers``: (system, value) → the
   participant owning it, from the participant registry) change only by the operator: an
   Organization created with any of them, an update that adds or removes one, or the delete
   of an Organization carrying one is refused [registered-identifier].
7. Anything else: anyone may create it [new-resource]; only its author updates or deletes it
   [author / not-author].
8. One exception to 7 (FHIR's workflow: the filler answers the request): the participant a
   Task is assigned to (``Task.owner`` is the requester's Organization, before and after) may
   update it, changing nothing but the fulfilment — ``status`` (to a fulfilment status),
   ``statusReason`` (coded only, from ``TASK_REASON_SYSTEM``: free text could carry health
   data into the author's own record), ``executionPeriod``, ``lastModified`` and ``output``
   (only ``valueDate`` / ``valueDateTime`` / ``valueReference``) [task-owner]. Labels, tags,
   the patient, the owner and every other element stay as they are, so the owner can never
   widen who sees the Task; it never deletes one.

9. The shared plan (docs/shared-plan.md): a Task coded ``plan-activity`` (system
   ``COORDINATION_PLAN_SYSTEM``) is an activity of the plan, and each party creates, updates
   and deletes only its own — ``Task.owner`` is the requester's Organization, in the current
   and the new version — while a job centre, which coordinates the plan, also assigns
   activities to the other parties [plan-activity]. Rules 7 and 8 then apply as usual: the
   author changes its Task, the owner records its fulfilment. So the GP never touches the
   rehabilitation unit's activity, and the employer never assigns work to anyone. The plan
   itself and its team (a CarePlan or CareTeam with category ``coordinated-return-to-work``)
   are created and maintained by a job centre only (the first follow-up is the job centre's),
   and then, by rule 7, only by the job centre that wrote them.

A current version without an author (legacy data, or seeded by the operator) is changed by
nobody but the operator, except an Organization by the participant it is. Authorship is fixed
at creation: on an update the gateway keeps ``meta.source`` (and the author-kind tag) of the
current version — ``stamp_author(strip_gateway_tags(incoming), author_of(current),
author_kind_of(current))`` — so writing a resource never makes the writer its author; the
last writer is recorded separately (Provenance) and never grants access. An update with no
current version (a PUT creating a new id) is decided as a create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from consent._codes import (
    CITIZEN_AUTHORED_TYPES,
    CITIZEN_PORTAL,
    CONSENT_RECORDER_KINDS,
    COORDINATED_RETURN,
    COORDINATION_PLAN_SYSTEM,
    DESCRIBING_ELEMENTS,
    DIRECTORY_TYPES,
    FHIR_BASE,
    JOBCENTRE,
    PLAN_ACTIVITY,
)
from consent._model import Requester
from consent._resources import (
    Resource,
    author_of,
    local_reference,
    patient_of,
    reference_of,
    strip_gateway_tags,
)

WriteAction = Literal["create", "update", "delete"]

_NO_IDENTIFIERS: Final[Mapping[tuple[str, str], str]] = MappingProxyType({})
# What a withdrawal by the citizen portal may change: the status (and what the gateway stamps).
_WITHDRAWAL_FREE = frozenset({"status", "meta", "text", "id"})
_WITHDRAWN = "inactive"
# Rule 8: what the owner of a Task may change, and how.
TASK_REASON_SYSTEM = f"{FHIR_BASE}/CodeSystem/referral-decline-reason"
_FULFILMENT = frozenset({"status", "statusReason", "executionPeriod", "lastModified", "output"})
_FULFILMENT_STATUSES = frozenset(
    {"received", "accepted", "rejected", "in-progress", "on-hold", "completed", "failed"}
)
_OUTPUT_VALUES = frozenset({"valueDate", "valueDateTime", "valueReference"})
_STAMPED_META = frozenset({"versionId", "lastUpdated", "source"})


@dataclass(frozen=True, slots=True)
class WriteDecision:
    """The outcome for one write; ``reason`` holds no health data and may be shown the caller.

    ``rule`` is a stable short code (see the module docstring): ``author``, ``not-author``,
    ``new-resource``, ``append-only``, ``operator-only``, ``citizen-own``, ``consent-recorder``,
    ``directory-self``, ``directory-other``, ``registered-identifier``, ``type-change``,
    ``task-owner``, ``plan-activity``.
    """

    allowed: bool
    rule: str
    reason: str


def _allow(rule: str, reason: str) -> WriteDecision:
    return WriteDecision(True, rule, reason)


def _refuse(rule: str, reason: str) -> WriteDecision:
    return WriteDecision(False, rule, reason)


def _ours(resource: Resource) -> bool:
    url = resource.get("url")
    return isinstance(url, str) and url.startswith(FHIR_BASE)


def _registered(
    resource: Resource, registered: Mapping[tuple[str, str], str]
) -> frozenset[tuple[str, str]]:
    """The registered (system, value) identifiers a resource carries."""
    identifiers = resource.get("identifier")
    if not isinstance(identifiers, list):
        return frozenset()
    found = set()
    for identifier in identifiers:
        if not isinstance(identifier, Mapping):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and (system, value) in registered:
            found.add((system, value))
    return frozenset(found)


def _by_author(requester: Requester, current: Resource) -> WriteDecision:
    author = author_of(current)
    if author is None:
        return _refuse(
            "not-author", "a resource without a recorded author is changed by the operator"
        )
    if author == requester.participant:
        return _allow("author", "the requester wrote this resource")
    return _refuse("not-author", "only the participant that wrote a resource changes it")


def _owner_of(resource: Mapping[str, Any]) -> str | None:
    owner = resource.get("owner")
    return local_reference(owner.get("reference")) if isinstance(owner, dict) else None


def _meta_kept(current: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    """Labels, tags and profiles unchanged (what the gateway stamps aside)."""

    def kept(resource: Mapping[str, Any]) -> dict[str, Any]:
        meta = strip_gateway_tags(resource).get("meta")
        if not isinstance(meta, dict):
            return {}
        return {k: v for k, v in meta.items() if k not in _STAMPED_META}

    return kept(current) == kept(incoming)


def _fulfilment_only(current: Mapping[str, Any], incoming: Mapping[str, Any]) -> str | None:
    """None when ``incoming`` changes only the fulfilment of ``current``; else what it breaks."""
    keys = (set(current) | set(incoming)) - _FULFILMENT - {"meta", "id", "text"}
    changed = sorted(k for k in keys if current.get(k) != incoming.get(k))
    if changed:
        return f"the owner of a Task changes only its fulfilment, not {', '.join(changed)}"
    if not _meta_kept(current, incoming):
        return "the owner of a Task cannot change its labels or tags"
    if incoming.get("status") != current.get("status"):
        if incoming.get("status") not in _FULFILMENT_STATUSES:
            return "the owner of a Task sets only a fulfilment status"
    reason = incoming.get("statusReason")
    if reason is not None and reason != current.get("statusReason"):
        codings = reason.get("coding") if isinstance(reason, dict) else None
        if (
            not isinstance(reason, dict)
            or set(reason) != {"coding"}
            or not codings
            or any(
                not isinstance(c, dict)
                or c.get("system") != TASK_REASON_SYSTEM
                or set(c) - {"system", "code", "display"}
                for c in codings
            )
        ):
            return f"a Task's statusReason from its owner is coded from {TASK_REASON_SYSTEM} only"
    for output in incoming.get("output") or []:
        if not isinstance(output, dict) or set(output) - {"type"} - _OUTPUT_VALUES:
            return "a Task's output from its owner is a date or a reference"
        if len(set(output) & _OUTPUT_VALUES) != 1:
            return "a Task's output from its owner is a date or a reference"
    return None


def _task_owner(
    requester: Requester, current: Mapping[str, Any], incoming: Mapping[str, Any] | None
) -> WriteDecision | None:
    """Rule 8, when it applies (else None: rule 7 stands)."""
    if incoming is None or requester.organization_ref is None:
        return None
    if current.get("resourceType") != "Task":
        return None
    owner = requester.organization_ref
    if _owner_of(current) != owner or _owner_of(incoming) != owner:
        return None
    problem = _fulfilment_only(current, incoming)
    if problem is not None:
        return _refuse("task-owner", problem)
    return _allow("task-owner", "the owner of a Task records its fulfilment")


def _is_plan_activity(resource: Mapping[str, Any]) -> bool:
    if resource.get("resourceType") != "Task":
        return False
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    return isinstance(codings, list) and any(
        isinstance(c, dict)
        and c.get("system") == COORDINATION_PLAN_SYSTEM
        and c.get("code") == PLAN_ACTIVITY
        for c in codings
    )


_PLAN_TYPES = frozenset({"CarePlan", "CareTeam"})


def _is_coordination_plan(resource: Mapping[str, Any]) -> bool:
    if resource.get("resourceType") not in _PLAN_TYPES:
        return False
    categories = resource.get("category")
    return isinstance(categories, list) and any(
        isinstance(category, dict)
        and isinstance(category.get("coding"), list)
        and any(
            isinstance(c, dict) and c.get("code") == COORDINATED_RETURN for c in category["coding"]
        )
        for category in categories
    )


def _plan_activity(
    requester: Requester, current: Resource | None, incoming: Resource | None
) -> WriteDecision | None:
    """Rule 9: a refusal, an allowed create, or None (the usual rules decide)."""
    versions = [v for v in (current, incoming) if v is not None]
    if any(_is_coordination_plan(v) for v in versions) and requester.kind != JOBCENTRE:
        return _refuse(
            "plan-activity", "the shared plan and its team are kept by the coordinating job centre"
        )
    if not any(_is_plan_activity(v) for v in versions):
        return None
    own = requester.organization_ref
    if requester.kind != JOBCENTRE and (own is None or any(_owner_of(v) != own for v in versions)):
        return _refuse(
            "plan-activity",
            "a party changes only its own activities of the plan (Task.owner); "
            "the coordinating job centre assigns them to others",
        )
    if current is None:
        return _allow("plan-activity", "a party adds an activity to the plan")
    return None


def _portal(
    requester: Requester,
    action: WriteAction,
    current: Resource | None,
    incoming: Resource | None,
    resource_type: str,
) -> WriteDecision:
    own = local_reference(requester.patient)
    versions = [v for v in (current, incoming) if v is not None]
    if resource_type in CITIZEN_AUTHORED_TYPES and own is not None:
        if any(patient_of(v) != own for v in versions):
            return _refuse("citizen-own", "the citizen writes only about themselves")
        if current is None:
            return _allow("citizen-own", "the citizen adds a goal or a comment of their own")
        if author_of(current) == requester.participant:
            return _allow("citizen-own", "the citizen changes what they wrote")
        return _refuse("citizen-own", "the citizen changes only what they wrote")
    if resource_type != "Consent" or own is None or any(patient_of(v) != own for v in versions):
        return _refuse(
            "citizen-own",
            "the citizen portal writes only its own citizen's consents, goals and comments",
        )
    if current is None:
        return _allow("consent-recorder", "the citizen records a consent of their own")
    if action == "delete":
        return _allow("consent-recorder", "the citizen withdraws their consent")
    if author_of(current) == requester.participant:
        return _allow("consent-recorder", "the citizen changes a consent they recorded")
    if incoming is not None and _is_withdrawal(current, incoming):
        return _allow("consent-recorder", "the citizen withdraws their consent")
    return _refuse(
        "consent-recorder",
        "the citizen portal may only withdraw a consent another participant recorded",
    )


def _is_withdrawal(current: Resource, incoming: Resource) -> bool:
    if incoming.get("status") != _WITHDRAWN:
        return False
    keep = {k: v for k, v in current.items() if k not in _WITHDRAWAL_FREE}
    new = {k: v for k, v in incoming.items() if k not in _WITHDRAWAL_FREE}
    return keep == new


def _consent(
    requester: Requester, current: Resource | None, incoming: Resource | None
) -> WriteDecision:
    if current is None:
        if requester.kind in CONSENT_RECORDER_KINDS:
            return _allow("consent-recorder", "this participant records consents")
        return _refuse(
            "consent-recorder",
            "only a job centre, a rehabilitation unit or the citizen record consents",
        )
    if author_of(current) != requester.participant:
        return _refuse(
            "consent-recorder", "only the participant that recorded a consent changes it"
        )
    if incoming is not None and patient_of(incoming) != patient_of(current):
        return _refuse("consent-recorder", "a consent cannot be moved to another citizen")
    return _allow("consent-recorder", "the requester recorded this consent")


def _organization(
    requester: Requester,
    action: WriteAction,
    current: Resource | None,
    incoming: Resource | None,
    registered: Mapping[tuple[str, str], str],
) -> WriteDecision:
    changed_ids = _refuse(
        "registered-identifier",
        "a participant's registered identifiers are changed only by the operator",
    )
    if current is None:
        if incoming is not None and _registered(incoming, registered):
            return changed_ids
        return _allow("new-resource", "anyone may add a new resource")
    own = requester.organization_ref
    same = own is not None and reference_of(current) == own
    if incoming is not None and reference_of(incoming) not in (None, own):
        same = False
    if not same:
        return _refuse(
            "directory-other", "an Organization is changed only by the participant it is"
        )
    before = _registered(current, registered)
    after = _registered(incoming, registered) if incoming is not None else frozenset()
    if before != after or (action == "delete" and before):
        return changed_ids
    return _allow("directory-self", "the participant changes its own Organization")


def _named_organization(resource: Resource, element: str) -> tuple[bool, str | None]:
    """Whether ``element`` is present, and the Organization it references (None: unreadable)."""
    if element not in resource:
        return False, None
    value = resource[element]
    return True, local_reference(value.get("reference")) if isinstance(value, Mapping) else None


def _directory(
    requester: Requester, resource_type: str, current: Resource, incoming: Resource | None
) -> WriteDecision:
    own = requester.organization_ref
    element = DESCRIBING_ELEMENTS.get(resource_type)
    if element is not None:
        other = _refuse(
            "directory-other", "a directory entry is changed only by the participant it describes"
        )
        named, organization = _named_organization(current, element)
        named_after, organization_after = (
            _named_organization(incoming, element) if incoming is not None else (False, None)
        )
        if named_after and (own is None or organization_after != own):
            return other  # it may not be made to describe another participant
        if named:
            if own is None or organization != own or (incoming is not None and not named_after):
                return other
            return _allow("directory-self", "the participant changes its own directory entry")
    author = author_of(current)
    if author is None:
        return _refuse(
            "directory-other",
            "a directory entry without a recorded author is changed by the operator",
        )
    if author == requester.participant:
        return _allow("directory-self", "the requester wrote this directory entry")
    return _refuse(
        "directory-other", "only the participant that wrote a directory entry changes it"
    )


def decide_write(
    requester: Requester,
    action: WriteAction,
    current: Mapping[str, Any] | None,
    incoming: Mapping[str, Any] | None,
    *,
    registered_identifiers: Mapping[tuple[str, str], str] = _NO_IDENTIFIERS,
) -> WriteDecision:
    """Decide on one write (rules: module docstring).

    ``current``: the stored current version (None for a create); ``incoming``: the new content
    (None for a delete). A create with a current version, or an update or delete without the
    version it needs, is a programming error (ValueError).
    """
    if action == "create":
        if incoming is None or current is not None:
            raise ValueError("a create has new content and no current version")
    elif action == "update":
        if incoming is None:
            raise ValueError("an update needs the new content")
    elif action == "delete":
        if current is None:
            raise ValueError("a delete needs the current version")
        incoming = None
    else:
        raise ValueError(f"unknown write action {action!r}")
    versions = [v for v in (current, incoming) if v is not None]
    resource_type = str(versions[0].get("resourceType", ""))
    if any(v.get("resourceType") == "AuditEvent" for v in versions):
        return _refuse("append-only", "AuditEvents are written by the gateway only")
    if any(str(v.get("resourceType", "")) != resource_type for v in versions):
        return _refuse("type-change", "an update cannot change the resource type")
    if any(_ours(v) for v in versions):
        return _refuse(
            "operator-only", "Brobygger's own definitions are changed only by the operator"
        )
    if requester.kind == CITIZEN_PORTAL:
        return _portal(requester, action, current, incoming, resource_type)
    if resource_type == "Consent":
        return _consent(requester, current, incoming)
    if resource_type == "Organization":
        return _organization(requester, action, current, incoming, registered_identifiers)
    activity = _plan_activity(requester, current, incoming)
    if activity is not None and (current is None or not activity.allowed):
        return activity
    if current is None:
        return _allow("new-resource", "anyone may add a new resource")
    if resource_type in DIRECTORY_TYPES:
        return _directory(requester, resource_type, current, incoming)
    decision = _by_author(requester, current)
    if not decision.allowed and action == "update":
        return _task_owner(requester, current, incoming) or decision
    return decision
