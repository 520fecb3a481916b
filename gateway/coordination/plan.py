"""The shared plan as one reader sees it, and the push of its changes to the parties.

``plan_view`` gathers a plan's parts (its CareTeam, the goals naming it, the activities,
gradual-return proposals and notes based on it, and their history) through the reader's own
guarded data path, so that every part passes the consent gate: nothing is gathered that the
same reader could not fetch by REST. ``push_plan_changes`` puts one notice per changed part
(version) in the mailbox of every party that follows the plan (its CareTeam and its author);
the delivery renders each notice for its receiver under consent (``render_for``), so a party
is never told more than it may read. Idempotent: a part's version is announced once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from consent import author_of
from gateway.coordination.notices import notice_bundle, record_notice
from gateway.data.path import DataPath
from gateway.errors import NotFound
from gateway.messaging import records
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.settings import Settings
from gateway.store.repository import Store
from mappings.coordination import COORDINATED_RETURN, GOAL_PLAN_URL, PlanView
from mappings.jobcentre_case._tables import CAREPLAN_CATEGORY_SYSTEM

log = logging.getLogger(__name__)

PLAN_CATEGORY = f"{CAREPLAN_CATEGORY_SYSTEM}|{COORDINATED_RETURN}"
PLAN_SENDER = "gateway"
# As the deadline notices: the contract has no event code of its own for a plan change.
PLAN_EVENT = "sickness-benefit-case"
_NAMESPACE = uuid.UUID("0b7d7a52-1d7e-4f57-9a0f-4f0b9a7c2e15")
_PAGE = 500
_WHAT = {
    "CareTeam": "deltagerne",
    "Goal": "et mål",
    "Task": "en aktivitet",
    "Communication": "en note",
    "Observation": "timer",
}


def _ref(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) else None


async def _all(data: DataPath, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    offset = 0
    for _ in range(100):  # bounded: 50,000 parts of one kind per plan
        page = await data.search(
            rtype,
            [*params, ("_count", str(_PAGE)), ("_offset", str(offset))],
            max_count=_PAGE,
        )
        found += page.result.matches
        if not page.result.has_more:
            break
        offset += _PAGE
    return found


def names_in(resources: list[dict[str, Any]]) -> set[str]:
    """Organization references named by the parts (owners, authors, members, senders)."""
    out: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref.startswith("Organization/"):
                out.add(ref)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(resources)
    return out


async def plan_view(data: DataPath, plan_id: str, *, with_history: bool = True) -> PlanView:
    """The plan ``plan_id`` as the data path's principal may see it (404 when hidden)."""
    plan = await data.read("CarePlan", plan_id, interaction="operation")
    ref = f"CarePlan/{plan_id}"
    team_refs = [r for r in (_ref(t) for t in plan.get("careTeam") or []) if r]
    view = PlanView(plan=plan)
    view.team = await data.read_many(team_refs, interaction="operation")
    view.activities = await _all(data, "Task", [("based-on", ref), ("_sort", "_id")])
    view.gradual_return = await _all(data, "CarePlan", [("based-on", ref), ("_sort", "_id")])
    view.notes = await _all(data, "Communication", [("based-on", ref), ("_sort", "_id")])
    patient = _ref(plan.get("subject"))
    if patient is not None and patient.startswith("Patient/"):
        goals = await _all(data, "Goal", [("patient", patient), ("_sort", "_id")])
        view.goals = [
            g
            for g in goals
            if any(
                e.get("url") == GOAL_PLAN_URL and _ref(e.get("valueReference")) == ref
                for e in g.get("extension") or []
            )
        ]
    organizations = await data.read_many(
        sorted(names_in(view.resources())), interaction="operation"
    )
    view.names = {
        f"Organization/{o['id']}": str(o.get("name", o["id"]))
        for o in organizations
        if o.get("resourceType") == "Organization"
    }
    if with_history:
        for part in view.resources():
            entries, _ = await data.history(
                part["resourceType"], str(part["id"]), since=None, count=100, offset=0
            )
            for entry in entries:
                shown = entry.resource or {}
                who = author_of(shown) or "?"
                kind = "planen" if part is plan else _WHAT.get(entry.resource_type, "")
                if part is not plan and entry.resource_type == "CarePlan":
                    kind = "optrapningen"
                what = f"{kind} "
                what += f"{entry.resource_type}/{entry.id} version {entry.version} ({entry.method})"
                view.changes.append((entry.last_updated.isoformat(), who, what))
    return view


async def plans_of(data: DataPath, patient: str) -> list[dict[str, Any]]:
    """The coordination plans of ``Patient/<id>`` the principal may see, newest first."""
    return await _all(
        data, "CarePlan", [("patient", patient), ("category", PLAN_CATEGORY), ("_sort", "-date")]
    )


# --- pushing changes -------------------------------------------------------------------------


@dataclass(slots=True)
class PushReport:
    plans: int = 0
    parts: int = 0
    notices: list[tuple[str, str]] = field(default_factory=list)  # (part ref@version, receiver)


def notice_id(part: str, version: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"plan-change|{part}|{version}"))


def _followers(view: PlanView, by_org: dict[str, Participant]) -> list[Participant]:
    orgs = [_ref(view.plan.get("author"))]
    for team in view.team:
        for member in team.get("participant") or []:
            orgs.append(_ref(member.get("member")))
    found: dict[str, Participant] = {}
    for org in orgs:
        participant = by_org.get(org or "")
        if participant is not None:
            found[participant.name] = participant
    return list(found.values())


def _notice(
    part: dict[str, Any],
    header_id: str,
    receivers: list[Participant],
    base: str,
    gateway: Participant,
) -> dict[str, Any]:
    return notice_bundle(
        base=base,
        header_id=header_id,
        event_code=PLAN_EVENT,
        sender=gateway,
        source_name=PLAN_SENDER,
        receivers=receivers,
        reason="Den fælles plan er ændret",
        focus=part,
    )


async def push_plan_changes(store: Store, settings: Settings) -> PushReport:
    """Announce every plan part's current version to the plan's followers, once."""
    report = PushReport()
    data = DataPath.for_operator(store)
    directory = ParticipantDirectory(store.database)
    by_org = {
        f"Organization/{p.organization_id}": p for p in await directory.list() if p.organization_id
    }
    gateway = Participant(
        name=PLAN_SENDER,
        kind="gateway",
        display="Brobygger",
        identifiers=[],
        organization_id=None,
        jwks={"keys": []},
        endpoint=None,
    )
    for plan in await _all(data, "CarePlan", [("category", PLAN_CATEGORY), ("_sort", "_id")]):
        report.plans += 1
        try:
            view = await plan_view(data, str(plan["id"]), with_history=False)
        except NotFound:
            continue
        followers = _followers(view, by_org)
        for part in view.resources():
            report.parts += 1
            version = str((part.get("meta") or {}).get("versionId", ""))
            ref = f"{part['resourceType']}/{part['id']}"
            # The party that made the change needs no notice of it.
            receivers = [f for f in followers if f.name != author_of(part)]
            if not receivers:
                continue
            message_id = notice_id(ref, version)
            try:
                async with data.write("plan change") as writer:
                    if await records.find_message(writer.conn, PLAN_SENDER, message_id):
                        continue
                    await record_notice(
                        writer,
                        sender=PLAN_SENDER,
                        message_id=message_id,
                        event=PLAN_EVENT,
                        bundle=_notice(part, message_id, receivers, settings.fhir_base, gateway),
                        resources=[ref],
                        receivers=receivers,
                    )
                    report.notices += [(f"{ref}@{version}", r.name) for r in receivers]
            except IntegrityError:
                log.info("plan change %s@%s: announced by another worker", ref, version)
    return report
