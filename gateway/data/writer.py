"""Writes through the guard: every row read on the way to a write passes the consent gate.

A ``GuardedWriter`` wraps the store's raw ``Writer`` (one open transaction) for one
principal. It is the only writer the routes, the ingest pipeline and inbound messaging get:

- A conditional match (``If-None-Exist``, conditional ``PUT``/``DELETE``, a conditional
  reference) sees only what the caller may see. A hidden match behaves exactly like no match:
  same status, headers, body and audit trail (its denial is not recorded: nothing was
  disclosed and nothing was asked by id). Only the document pipelines (ingest, messaging) may
  *link* an identity resource (Patient, Practitioner, Organization) they may not see, to avoid
  duplicates; the link discloses nothing the sender did not send.
- The current version of a resource being changed must be visible to the caller (else it is
  unknown: 404), and the write policy of ``consent.decide_write`` must allow the change (403
  naming the rule). The author (``meta.source``) is fixed at creation: an update keeps it.
- Consents are written only by ``/fhir/Consent`` (``allow_consent``), never inside a Bundle,
  a document or a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import (
    author_kind_of,
    author_of,
    decide_write,
    is_addressed_to,
    stamp_author,
)
from gateway.access import ConsentGate, requester_of
from gateway.auth.principal import Principal
from gateway.errors import (
    BadRequest,
    Forbidden,
    Gone,
    NotFound,
    PreconditionFailed,
    UnprocessableResource,
)
from gateway.participants.identifiers import (
    UNIQUE_SYSTEMS,
    InvalidIdentifier,
    normalise_identifier,
)
from gateway.store.repository import Store, Writer, WriteResult, new_id
from gateway.store.schema import participants, resource_history, resources
from profiles import fhir_json

# Identity resources: the document pipelines may link to a hidden one instead of duplicating.
IDENTITY_TYPES = frozenset({"Patient", "Practitioner", "Organization"})
# How many candidates a conditional match decides on (hidden ones do not count as matches).
MATCH_LIMIT = 1000


@dataclass(slots=True)
class Match:
    """What a conditional criterion found, as far as the caller may know."""

    id: str
    # The visible (maybe redacted) form; None for an identity linked without disclosure.
    resource: dict[str, Any] | None


class GuardedWriter:
    """The write primitives of one transaction, bound to one principal (see module doc)."""

    def __init__(
        self,
        raw: Writer,
        principal: Principal,
        gate: ConsentGate,
        *,
        enforce: bool = True,
        operator: bool = False,
        link_identities: bool = False,
        allow_consent: bool = False,
    ) -> None:
        self.raw = raw
        self.conn = raw.conn
        self.store: Store = raw.store
        self.principal = principal
        self.requester = requester_of(principal)
        self.gate = gate
        self.enforce = enforce and not operator
        self.operator = operator
        self.link_identities = link_identities
        self.allow_consent = allow_consent
        self.results: list[WriteResult] = []
        self._registered: dict[tuple[str, str], str] | None = None

    # --- reads on the way ------------------------------------------------------------------

    async def _contents(self, rtype: str, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        query = (
            select(resources.c.content)
            .where(
                resources.c.type == rtype,
                resources.c.id.in_(ids),
                resources.c.deleted == false(),
            )
            .order_by(resources.c.id)
        )
        return [fhir_json.loads(row.content) for row in await self.conn.execute(query)]

    async def visible(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ones the caller may see (redacted where consent says so); nothing disclosed."""
        if not self.enforce or not items:
            return items
        return await self.gate.matches(items, record_denials=False)

    def disclose(self, resource: dict[str, Any]) -> None:
        """Record that a visible resource read on the way is returned to the caller."""
        if self.enforce:
            self.gate.disclose([resource])

    async def find(
        self, rtype: str, criteria: str, *, limit: int = MATCH_LIMIT
    ) -> list[dict[str, Any]]:
        """The visible current resources matching ``criteria`` (a search query string)."""
        ids = await self.raw.search_ids(rtype, criteria, limit=limit)
        return await self.visible(await self._contents(rtype, ids))

    async def visible_ids(
        self, rtype: str, criteria: str, *, limit: int = MATCH_LIMIT
    ) -> list[str]:
        return [str(r["id"]) for r in await self.find(rtype, criteria, limit=limit)]

    def _addressed(self, resource: dict[str, Any]) -> bool:
        return is_addressed_to(resource, self.requester.participant, self.requester.organization)

    async def addressed(self, rtype: str, criteria: str) -> list[dict[str, Any]]:
        """What matches ``criteria`` among the resources addressed to the caller.

        For the document pipelines' links only (the statement that answers the caller's own
        request, which completes the request's Task): the addressee rule alone, without the
        cross-sector and mental-health gates, because the link reveals only the statement's
        id to the participant that asked for it. Nothing read here is returned to the client.
        """
        ids = await self.raw.search_ids(rtype, criteria, limit=MATCH_LIMIT)
        return [r for r in await self._contents(rtype, ids) if self._addressed(r)]

    async def read(self, rtype: str, rid: str) -> dict[str, Any] | None:
        """The current version if the caller may see it; None when hidden, unknown or deleted."""
        found = await self._contents(rtype, [rid])
        shown = await self.visible(found)
        return shown[0] if shown else None

    async def reveal(self, rtype: str, rid: str) -> dict[str, Any]:
        """A read asked for by id (a Bundle's GET entry): disclosed and audited, or 404/410."""
        row = await self.raw.current(rtype, rid)
        if row is None:
            raise NotFound(f"{rtype}/{rid} is not known")
        if row.deleted:
            await self.raise_gone_or_unknown(rtype, rid, row.version)
        resource: dict[str, Any] = fhir_json.loads(row.content)
        if not self.enforce:
            return resource
        return await self.gate.check(resource)

    async def last_content(self, rtype: str, rid: str) -> dict[str, Any] | None:
        return await last_content(self.conn, rtype, rid)

    async def raise_gone_or_unknown(self, rtype: str, rid: str, version: int) -> None:
        """A deleted resource: 410 for whoever could see it, 404 (unknown) for everyone else."""
        previous = await self.last_content(rtype, rid)
        if previous is not None and self.enforce:
            decision = await self.gate.sees(previous, record_denials=False)
            if not decision.permitted:
                raise NotFound(f"{rtype}/{rid} is not known")
        raise Gone(f"{rtype}/{rid} was deleted", headers={"ETag": f'W/"{version}"'})

    async def match(self, rtype: str, criteria: str, where: str) -> Match | None:
        """The one resource ``criteria`` matches among those the caller may see.

        More than one visible match is a 412. A hidden match is no match, except that the
        document pipelines link an identity resource (``link_identities``): always without
        showing it, so that linking costs no consent decision and discloses nothing.
        """
        ids = await self.raw.search_ids(rtype, criteria, limit=MATCH_LIMIT)
        if not ids:
            return None
        if self.link_identities and rtype in IDENTITY_TYPES and self.enforce:
            # A document names its parties: link to the one stored, show nothing of it (seen
            # or not, the sender learns only the id its own resources now point at).
            if len(ids) > 1:
                raise PreconditionFailed(f"{rtype}?… matches more than one", expression=where)
            return Match(ids[0], None)
        rows = await self._contents(rtype, ids)
        visible = await self.visible(rows)
        if len(visible) > 1:
            raise PreconditionFailed(f"{rtype}?… matches more than one", expression=where)
        if visible:
            return Match(str(visible[0]["id"]), visible[0])
        return None

    async def match_many(self, wanted: list[tuple[str, str, str]]) -> list[Match | None]:
        """:meth:`match` for many (type, criteria, where) at once, in that order: one search
        statement, one content read and one consent decision for all of them, with the
        same outcome (the first ambiguous criterion in order is the 412)."""
        found = await self.raw.search_ids_many(
            [(rtype, criteria, MATCH_LIMIT) for rtype, criteria, _where in wanted]
        )
        if found is None:  # a criterion does not parse: one by one, as before
            return [await self.match(rtype, criteria, where) for rtype, criteria, where in wanted]
        linked = self.link_identities and self.enforce
        to_read: dict[str, set[str]] = {}
        for (rtype, _criteria, _where), ids in zip(wanted, found, strict=True):
            if ids and not (linked and rtype in IDENTITY_TYPES):
                to_read.setdefault(rtype, set()).update(ids)
        rows: list[dict[str, Any]] = []
        if to_read:
            query = (
                select(resources.c.content)
                .where(
                    or_(
                        *[
                            and_(resources.c.type == rtype, resources.c.id.in_(sorted(ids)))
                            for rtype, ids in sorted(to_read.items())
                        ]
                    ),
                    resources.c.deleted == false(),
                )
                .order_by(resources.c.type, resources.c.id)
            )
            rows = [fhir_json.loads(row.content) for row in await self.conn.execute(query)]
        shown = {(str(r["resourceType"]), str(r["id"])): r for r in await self.visible(rows)}
        out: list[Match | None] = []
        for (rtype, _criteria, where), ids in zip(wanted, found, strict=True):
            if not ids:
                out.append(None)
                continue
            if linked and rtype in IDENTITY_TYPES:
                if len(ids) > 1:
                    raise PreconditionFailed(f"{rtype}?… matches more than one", expression=where)
                out.append(Match(ids[0], None))
                continue
            visible = [shown[(rtype, rid)] for rid in sorted(ids) if (rtype, rid) in shown]
            if len(visible) > 1:
                raise PreconditionFailed(f"{rtype}?… matches more than one", expression=where)
            out.append(Match(str(visible[0]["id"]), visible[0]) if visible else None)
        return out

    # --- writes ----------------------------------------------------------------------------

    async def _registered_identifiers(self) -> dict[tuple[str, str], str]:
        """(system, value) → participant, for the unique identifiers of the directory."""
        if self._registered is None:
            rows = await self.conn.execute(select(participants.c.name, participants.c.identifiers))
            found: dict[tuple[str, str], str] = {}
            for row in rows:
                for ident in json.loads(row.identifiers):
                    if ident.get("system") in UNIQUE_SYSTEMS:
                        found.setdefault((ident["system"], ident["value"]), row.name)
            self._registered = found
        return self._registered

    async def _policy(
        self, action: str, previous: dict[str, Any] | None, incoming: dict[str, Any] | None
    ) -> tuple[bool, str]:
        registered: dict[tuple[str, str], str] = {}
        kinds = {r.get("resourceType") for r in (previous, incoming) if r is not None}
        if "Organization" in kinds:
            registered = await self._registered_identifiers()
        verdict = decide_write(
            self.requester,
            action,  # type: ignore[arg-type]  # one of create / update / delete
            _normalised(previous),
            _normalised(incoming),
            registered_identifiers=registered,
        )
        return verdict.allowed, verdict.reason

    def _authored(
        self, resource: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The author is fixed at creation: a new resource is the caller's, a change keeps it."""
        if self.operator:
            return resource
        if previous is None:
            return stamp_author(resource, self.principal.participant, kind=self.principal.kind)
        author = author_of(previous)
        if author is None:
            return resource
        return stamp_author(resource, author, kind=author_kind_of(previous))

    async def put(
        self,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
        must_exist: bool = False,
        transition: bool = False,
    ) -> WriteResult:
        """Create or update ``resource`` (its type/id), as the write policy allows.

        ``transition``: a gateway-defined step on a resource addressed to the caller (a
        statement completing the Task of the request it answers); the author stays.
        """
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        if rtype == "Consent" and not self.allow_consent:
            raise BadRequest(
                "record or change a Consent at /fhir/Consent (not in a Bundle, document or "
                "message)",
                expression="Consent",
            )
        row = await self.raw.current(rtype, rid)
        previous: dict[str, Any] | None = None
        if row is not None:
            previous = (
                await self.last_content(rtype, rid) if row.deleted else fhir_json.loads(row.content)
            )
        if transition:
            # Only on what is addressed to the caller; the author stays the resource's own.
            if previous is None or not self._addressed(previous):
                raise NotFound(f"{rtype}/{rid} is not known")
        else:
            if previous is not None and self.enforce:
                decision = await self.gate.sees(previous, record_denials=False)
                if not decision.permitted:
                    raise NotFound(f"{rtype}/{rid} is not known")
            if not self.operator:
                allowed, reason = await self._policy(
                    "create" if previous is None else "update", previous, resource
                )
                if not allowed:
                    raise Forbidden(reason, expression=rtype)
            if self.enforce:
                await self._plans_visible(resource)
        stamped = self._authored(resource, previous)
        result = await self.raw.put(stamped, if_match=if_match, must_exist=must_exist, current=row)
        self.results.append(result)
        # A Task changed by someone other than its author: its owner (consent rule task-owner).
        by_other = (
            rtype == "Task"
            and previous is not None
            and not self.operator
            and author_of(previous) not in (None, self.principal.participant)
        )
        if (transition or by_other) and not result.unchanged:
            # The last writer (a statement closing its Task, a Task's owner recording its
            # fulfilment) is recorded, and grants nothing: the resource stays its author's.
            await self.raw.put(self._last_writer(result))
        return result

    async def citizen_ids(self, criteria: str) -> list[str]:
        """The document pipelines' link (``link_identities``): the ids of the Patients
        ``criteria`` matches, seen or not (at most three: one is a link, more a conflict)."""
        if not self.link_identities:
            raise Forbidden("only the document pipelines link a citizen they may not see")
        return await self.raw.search_ids("Patient", criteria, limit=3)

    async def record_identity_facts(
        self, rid: str, merge: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> WriteResult | None:
        """A message's newer facts about a citizen, as the next version of the stored Patient.

        Only for the document pipelines (``link_identities``) and only on a Patient: they link
        to it without seeing it, and what a document states about the citizen (deceased, an
        address, a name, a further CPR-system identifier) is recorded instead of lost. The
        author stays the Patient's own; the last writer is recorded (a Provenance) and grants
        nothing; nothing is disclosed to the caller.
        """
        if not self.link_identities:
            raise Forbidden("only the document pipelines record facts about a citizen")
        row = await self.raw.current("Patient", rid)
        if row is None or row.deleted:
            return None
        previous: dict[str, Any] = fhir_json.loads(row.content)
        resource = merge(previous)
        if resource == previous:
            return None
        author = author_of(previous)
        stamped = (
            resource
            if author is None
            else stamp_author(resource, author, kind=author_kind_of(previous))
        )
        result = await self.raw.put(stamped, current=row)
        self.results.append(result)
        if not result.unchanged:
            await self.raw.put(self._last_writer(result))
        return result

    async def _plans_visible(self, resource: dict[str, Any]) -> None:
        """A part of a plan (``basedOn`` / ``focus`` / the goal-plan extension naming a
        CarePlan) is written only by a participant that may see that plan: the employer adds
        nothing to a citizen's plan before the citizen's consent lets it read it. A hidden plan
        and an unknown one get the same answer."""
        for element, reference in _plan_references(resource):
            rid = reference.split("/", 1)[1]
            if await self.read("CarePlan", rid) is None and not self._written_here(rid):
                raise UnprocessableResource(
                    f"{element} names {reference}, which is not known",
                    expression=f"{resource['resourceType']}.{element}",
                )

    def _written_here(self, rid: str) -> bool:
        return any(r.resource_type == "CarePlan" and r.id == rid for r in self.results)

    def _last_writer(self, result: WriteResult) -> dict[str, Any]:
        who: dict[str, str] = {"display": self.principal.participant}
        if self.requester.organization:
            who["reference"] = self.requester.organization
        provenance = {
            "resourceType": "Provenance",
            "id": new_id(),
            "target": [
                {"reference": f"{result.resource_type}/{result.id}/_history/{result.version}"}
            ],
            "recorded": result.resource["meta"]["lastUpdated"],
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "UPDATE",
                    }
                ]
            },
            "agent": [{"who": who}],
        }
        return stamp_author(provenance, self.principal.participant, kind=self.principal.kind)

    async def delete(self, rtype: str, rid: str) -> int | None:
        """Tombstone ``rtype/rid`` as the write policy allows (None: nothing to delete)."""
        if rtype == "Consent" and not self.allow_consent:
            raise BadRequest("remove a Consent at /fhir/Consent", expression="Consent")
        row = await self.raw.current(rtype, rid)
        if row is None or row.deleted:
            return None
        previous: dict[str, Any] = fhir_json.loads(row.content)
        if self.enforce:
            decision = await self.gate.sees(previous, record_denials=False)
            if not decision.permitted:
                raise NotFound(f"{rtype}/{rid} is not known")
        if not self.operator:
            allowed, reason = await self._policy("delete", previous, None)
            if not allowed:
                raise Forbidden(reason, expression=rtype)
        return await self.raw.delete(rtype, rid)

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        """Create with a new id; with ``if_none_exist``, a visible match is returned instead."""
        rtype = str(resource["resourceType"])
        if if_none_exist:
            found = await self.match(rtype, if_none_exist, "If-None-Exist")
            if found is not None and found.resource is not None:
                return WriteResult(found.resource, created=False, matched_existing=True)
        return await self.put({**resource, "id": new_id()})


_GOAL_PLAN_URL = "http://brobygger.dk/fhir/StructureDefinition/goal-plan"


def _plan_references(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(element, ``CarePlan/<id>``) for every CarePlan a resource builds on or focuses on."""
    found: list[tuple[str, Any]] = []
    for element in ("basedOn", "focus"):
        value = resource.get(element)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                found.append((element, item.get("reference")))
    for extension in resource.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == _GOAL_PLAN_URL:
            value = extension.get("valueReference")
            found.append(("extension", value.get("reference") if isinstance(value, dict) else None))
    out = []
    for element, reference in found:
        if isinstance(reference, str):
            parts = reference.split("/")
            if len(parts) >= 2 and parts[-2] == "CarePlan" and parts[-1]:
                out.append((element, f"CarePlan/{parts[-1]}"))
            elif len(parts) >= 4 and parts[-4] == "CarePlan":  # CarePlan/<id>/_history/<n>
                out.append((element, f"CarePlan/{parts[-3]}"))
    return out


async def last_content(conn: AsyncConnection, rtype: str, rid: str) -> dict[str, Any] | None:
    """The newest version with content (what a deleted resource was), or None."""
    h = resource_history
    query = (
        select(h.c.content)
        .where(h.c.type == rtype, h.c.id == rid, h.c.deleted == false())
        .order_by(h.c.version.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else dict(fhir_json.loads(row.content))


def _normalised(resource: dict[str, Any] | None) -> dict[str, Any] | None:
    """For the policy: an Organization's identifiers in the directory's canonical form."""
    if resource is None or resource.get("resourceType") != "Organization":
        return resource
    identifiers = []
    for ident in resource.get("identifier") or []:
        if not isinstance(ident, dict):
            continue
        try:
            identifiers.append(
                normalise_identifier(str(ident.get("system", "")), str(ident.get("value", "")))
            )
        except InvalidIdentifier:
            identifiers.append(ident)
    return {**resource, "identifier": identifiers}
