"""The consent gate: every read path asks the consent engine, and every decision is audited.

A ``ConsentGate`` lives for one request. It turns the Principal into the engine's Requester,
loads the in-force Consents of the patients it meets (once per patient per request), decides
on each resource (``consent.filter_visible``) and remembers what it disclosed and denied.
``flush()`` writes the AuditEvents: one per patient and outcome, naming each resource, the rule
and the Consent behind the decision. Directory resources (Organization, Practitioner, …) are
not health data and are not audited.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import false, select
from sqlalchemy.ext.asyncio import AsyncConnection

from consent import (
    DIRECTORY_TYPES,
    Decision,
    Requester,
    active_consents,
    filter_visible,
    patient_of,
    stamp_author,
    supports_patient,
)
from gateway.auth.principal import Principal
from gateway.auth.tokens import purpose_coding
from gateway.errors import NotFound
from gateway.search.dates import format_instant, utc_now
from gateway.store import audit_log
from gateway.store.audit_writer import AuditWriter
from gateway.store.repository import Store, new_id
from gateway.store.schema import idx_reference, resources
from profiles import fhir_json

GATEWAY_PARTICIPANT = "brobygger-gateway"
_AUDIT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_ACTIONS = {"read": "R", "vread": "R", "history-instance": "R", "history-type": "R"}


def requester_of(principal: Principal) -> Requester:
    org = f"Organization/{principal.organization_id}" if principal.organization_id else None
    return Requester(
        participant=principal.participant,
        kind=principal.kind,
        organization=org,
        purpose=principal.purpose,
        patient=principal.patient,
    )


def reference_of(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


class ConsentGate:
    """Visibility for one request (implements ``gateway.store.repository.Visibility``)."""

    def __init__(
        self,
        store: Store,
        principal: Principal,
        *,
        interaction: str,
        audit: bool = True,
        now: datetime | None = None,
    ) -> None:
        self.store = store
        self.principal = principal
        self.requester = requester_of(principal)
        self.interaction = interaction
        self.audit = audit
        # Set by the app (gateway.store.audit_writer); without it events are written here.
        self.writer: AuditWriter | None = getattr(store, "audit_writer", None)
        self.now = now or datetime.now(UTC)
        self._consents: dict[str, list[Any]] = {}
        self._decisions: dict[str, Decision] = {}
        self._disclosed: dict[str, Decision] = {}
        self._denied: dict[str, Decision] = {}
        self._patient_of: dict[str, str | None] = {}
        self.connection: AsyncConnection | None = None

    # --- consents --------------------------------------------------------------------------

    async def _rows(self, query: Any) -> list[Any]:
        if self.connection is not None:
            return list((await self.connection.execute(query)).all())
        async with self.store.read_connection() as conn:
            return list((await conn.execute(query)).all())

    async def _load_consents(self, patients: Iterable[str]) -> None:
        missing = {p for p in patients if p not in self._consents}
        if not missing:
            return
        for patient in missing:
            self._consents[patient] = []
        ids = [p.split("/", 1)[1] for p in missing]
        query = select(resources.c.content).where(
            resources.c.type == "Consent",
            resources.c.deleted == false(),
            resources.c.id.in_(
                select(idx_reference.c.id).where(
                    idx_reference.c.type == "Consent",
                    idx_reference.c.param == "patient",
                    idx_reference.c.target_type == "Patient",
                    idx_reference.c.target_id.in_(ids),
                )
            ),
        )
        rows = await self._rows(query)
        by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            consent = fhir_json.loads(row.content)
            owner = patient_of(consent)
            if owner is not None and owner in missing:
                by_patient[owner].append(consent)
        for owner, consents in by_patient.items():
            self._consents[owner] = active_consents(consents, now=self.now)

    # --- decisions -------------------------------------------------------------------------

    async def decide(
        self,
        items: list[dict[str, Any]],
        *,
        visible_patients: Iterable[str] = (),
        record_denials: bool = True,
    ) -> list[Decision]:
        """One Decision per resource; denials are remembered for the audit unless told not.

        Rows read only to decide a write (a conditional match, a reference) are decided with
        ``record_denials=False``: a hidden match must leave the same trace as no match.
        """
        patients = {p for p in (patient_of(r) for r in items) if p is not None}
        await self._load_consents(patients)
        decisions = filter_visible(
            self.requester,
            items,
            self._consents,
            now=self.now,
            patients_with_visible_records=frozenset(visible_patients),
        )
        if self.requester.kind != "citizen-portal":
            # The audit trail names resources (also hidden ones) and who asked: it is the
            # citizen's to read, never another participant's, whatever a consent says.
            decisions = [
                Decision(
                    "deny", "audit-trail", "only the citizen reads the audit trail", target=d.target
                )
                if r.get("resourceType") == "AuditEvent"
                else d
                for r, d in zip(items, decisions, strict=True)
            ]
        for resource, decision in zip(items, decisions, strict=True):
            key = reference_of(resource)
            self._decisions[key] = decision
            self._patient_of[key] = (
                key if resource.get("resourceType") == "Patient" else patient_of(resource)
            )
            if not decision.permitted and record_denials:
                self._denied[key] = decision
        return decisions

    async def matches(
        self, items: list[dict[str, Any]], *, record_denials: bool = True
    ) -> list[dict[str, Any]]:
        """Search candidates → the visible ones (redacted where the engine says so).

        A Patient found by a search is visible when any other record of it is (the engine's
        supporting rule), so denied Patients get that check before they are dropped.
        """
        decisions = await self.decide(items, record_denials=record_denials)
        hidden_patients = [
            r
            for r, d in zip(items, decisions, strict=True)
            if not d.permitted and r.get("resourceType") == "Patient"
        ]
        if hidden_patients:
            supported = {
                f"Patient/{r['id']}"
                for r in hidden_patients
                if await self._has_visible_record(str(r["id"]))
            }
            if supported:
                again = await self.decide(
                    [r for r in hidden_patients if f"Patient/{r['id']}" in supported],
                    visible_patients=supported,
                    record_denials=record_denials,
                )
                for decision in again:
                    if decision.permitted and decision.target:
                        self._denied.pop(decision.target, None)
                by_target = {d.target: d for d in again}
                decisions = [
                    by_target.get(d.target, d) if not d.permitted else d for d in decisions
                ]
        return [dict(d.resource) for d in decisions if d.resource is not None]

    async def includes(
        self, items: list[dict[str, Any]], matches: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        # Only what the caller did not write itself brings its Patient along (supporting rule).
        visible = {
            p
            for m in matches
            if (p := patient_of(m)) is not None
            and (
                m.get("resourceType") == "Patient"
                or ((d := self._decisions.get(reference_of(m))) is not None and supports_patient(d))
            )
        }
        decisions = await self.decide(items, visible_patients=visible)
        return [dict(d.resource) for d in decisions if d.resource is not None]

    async def sees(self, resource: dict[str, Any], *, record_denials: bool = True) -> Decision:
        """The decision on one resource (a Patient with the supporting rule), not disclosed."""
        visible_patients: set[str] = set()
        if resource.get("resourceType") == "Patient" and resource.get("id"):
            if await self._has_visible_record(str(resource["id"])):
                visible_patients.add(f"Patient/{resource['id']}")
        decisions = await self.decide(
            [resource], visible_patients=visible_patients, record_denials=record_denials
        )
        return decisions[0]

    async def check(self, resource: dict[str, Any]) -> dict[str, Any]:
        """One resource the caller asked for by id: visible (maybe redacted) or 404."""
        decision = await self.sees(resource)
        if decision.resource is None:
            # Exactly what an unknown id gets: a hidden resource does not exist for the caller.
            raise NotFound(f"{resource['resourceType']}/{resource['id']} is not known")
        shown = dict(decision.resource)
        self.disclose([shown])
        return shown

    async def records_of(self, patient_id: str) -> list[dict[str, Any]]:
        """Up to 500 current records that refer to the patient (not directory data, not the
        Patient itself, not audit trails: they mention the patient but are not its records)."""
        query = (
            select(resources.c.content)
            .where(
                resources.c.deleted == false(),
                resources.c.type.not_in(sorted(DIRECTORY_TYPES | {"Patient", "AuditEvent"})),
                resources.c.id.in_(
                    select(idx_reference.c.id).where(
                        idx_reference.c.target_type == "Patient",
                        idx_reference.c.target_id == patient_id,
                    )
                ),
            )
            .limit(500)
        )
        return [fhir_json.loads(r.content) for r in await self._rows(query)]

    async def record_decisions(self, patient_id: str) -> list[Decision]:
        """The caller's decision on each record of the patient (nothing recorded or disclosed)."""
        records = await self.records_of(patient_id)
        if not records:
            return []
        patient = f"Patient/{patient_id}"
        await self._load_consents([patient])
        return filter_visible(
            self.requester, records, {patient: self._consents[patient]}, now=self.now
        )

    async def _has_visible_record(self, patient_id: str) -> bool:
        # What the caller wrote itself never makes the Patient visible: writing a record
        # about a citizen must not become a way to read what others recorded.
        return any(supports_patient(d) for d in await self.record_decisions(patient_id))

    def disclose(self, shown: Iterable[dict[str, Any]]) -> None:
        """Record that these (already decided) resources were returned to the caller."""
        for resource in shown:
            key = reference_of(resource)
            decision = self._decisions.get(key)
            if decision is not None:
                self._disclosed[key] = decision

    # --- audit -----------------------------------------------------------------------------

    def _events(self) -> list[dict[str, Any]]:
        groups: dict[tuple[str, str], list[tuple[str, Decision]]] = defaultdict(list)
        for outcome, decisions in (("0", self._disclosed), ("4", self._denied)):
            for key, decision in decisions.items():
                # Directory data is not health data; reading the audit trail is not audited
                # again (it would only describe itself).
                if decision.rule == "directory" or key.startswith("AuditEvent/"):
                    continue
                patient = self._patient_of.get(key)
                if patient is None:
                    continue
                groups[(patient, outcome)].append((key, decision))
        events = []
        recorded = format_instant(utc_now())
        for (patient, outcome), items in sorted(groups.items()):
            events.append(self._event(patient, outcome, items, recorded))
        return events

    def _event(
        self, patient: str, outcome: str, items: list[tuple[str, Decision]], recorded: str
    ) -> dict[str, Any]:
        purpose = (
            [{"coding": [purpose_coding(self.principal.purpose)]}] if self.principal.purpose else []
        )
        agent: dict[str, Any] = {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "IRCP",
                    }
                ]
            },
            "who": {"display": self.principal.participant},
            "requestor": True,
        }
        if self.requester.organization:
            agent["who"]["reference"] = self.requester.organization
        if purpose:
            agent["purposeOfUse"] = purpose
        entities: list[dict[str, Any]] = [
            {
                "what": {"reference": patient},
                "type": {"system": _ENTITY_TYPE, "code": "1"},
                "role": {"system": _OBJECT_ROLE, "code": "1"},
            }
        ]
        for key, decision in sorted(items, key=lambda item: item[0]):
            detail = [{"type": "rule", "valueString": decision.rule}]
            if decision.consent:
                detail.append({"type": "consent", "valueString": decision.consent})
            detail.append({"type": "effect", "valueString": decision.effect})
            entities.append(
                {
                    "what": {"reference": key},
                    "type": {"system": _ENTITY_TYPE, "code": "2"},
                    "role": {"system": _OBJECT_ROLE, "code": "4"},
                    "detail": detail,
                }
            )
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "id": new_id(),
            "type": _AUDIT_TYPE,
            "subtype": [{"system": _INTERACTION_SYSTEM, "code": self.interaction}],
            "action": _ACTIONS.get(self.interaction, "E"),
            "recorded": recorded,
            "outcome": outcome,
            "outcomeDesc": "disclosed" if outcome == "0" else "denied",
            "agent": [agent],
            "source": {"observer": {"display": "Brobygger gateway"}},
            "entity": entities,
        }
        if purpose:
            event["purposeOfEvent"] = purpose
        return stamp_author(event, GATEWAY_PARTICIPANT)

    async def flush(self) -> int:
        """Write the AuditEvents for what this request disclosed and denied; how many."""
        if not self.audit:
            return 0
        events = self._events()
        if not events:
            return 0
        if self.writer is not None:
            await self.writer.write(events)
        else:
            async with self.store.write("audit") as writer:
                await audit_log.append(writer.conn, events)
        return len(events)


def consent_change_event(
    principal: Principal, consent: dict[str, Any], action: str
) -> dict[str, Any]:
    """The AuditEvent for recording or changing a Consent (written in the same transaction)."""
    requester = requester_of(principal)
    agent: dict[str, Any] = {"who": {"display": principal.participant}, "requestor": True}
    if requester.organization:
        agent["who"]["reference"] = requester.organization
    entities: list[dict[str, Any]] = []
    patient = patient_of(consent)
    if patient is not None:
        entities.append(
            {
                "what": {"reference": patient},
                "type": {"system": _ENTITY_TYPE, "code": "1"},
                "role": {"system": _OBJECT_ROLE, "code": "1"},
            }
        )
    entities.append(
        {
            "what": {"reference": reference_of(consent)},
            "type": {"system": _ENTITY_TYPE, "code": "2"},
            "role": {"system": _OBJECT_ROLE, "code": "4"},
            "detail": [{"type": "status", "valueString": str(consent.get("status", ""))}],
        }
    )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": new_id(),
        "type": _AUDIT_TYPE,
        "subtype": [{"system": _INTERACTION_SYSTEM, "code": action}],
        "action": "C" if action == "create" else "U",
        "recorded": format_instant(utc_now()),
        "outcome": "0",
        "outcomeDesc": f"consent {consent.get('status', '')}",
        "agent": [agent],
        "source": {"observer": {"display": "Brobygger gateway"}},
        "entity": entities,
    }
    return stamp_author(event, GATEWAY_PARTICIPANT)
