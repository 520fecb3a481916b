"""The guarded data path: the one way to stored resources, bound to one principal.

Every door — REST reads, searches, history, ``$everything``, writes, Bundles, the ingest
pipeline, inbound messages, forwarded copies and the operator CLI — gets a ``DataPath`` and
nothing else. Reads hand every row to the consent gate before paging, counting or returning;
writes go through ``GuardedWriter``, which gates every row read on the way (conditional
matches, references, the version being changed) and applies the write policy
(``consent.decide_write``) to every row it changes. The operator's path
(:meth:`DataPath.for_operator`) is the CLI's: no consent decision and no write policy, still
the same code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from consent import author_of, patient_of, strip_gateway_tags, validate_consent
from gateway.access import ConsentGate, consent_change_event
from gateway.auth.principal import Principal
from gateway.data.bundles import run_batch, run_transaction_in
from gateway.data.joins import resolve_guarded_joins
from gateway.data.writer import GuardedWriter, last_content
from gateway.errors import (
    BadRequest,
    Forbidden,
    Gone,
    Issue,
    MethodNotAllowed,
    NotFound,
    UnprocessableResource,
)
from gateway.search.query import SearchRequest
from gateway.store import audit_log
from gateway.store.repository import HistoryEntry, SearchResult, Store, WriteResult

OPERATOR = Principal(participant="operator", kind="operator", client_id="operator")

# The purpose a participant acts under when the gateway acts for it (delivery, document
# pipelines): the purpose its own token would most likely carry.
DEFAULT_PURPOSE: dict[str, str] = {
    "hospital": "TREAT",
    "gp": "medical-statement",
    "rehab-unit": "rehabilitation-planning",
    "jobcentre": "sickness-benefit-follow-up",
    "employer": "round-table-meeting",
    "citizen-portal": "citizen-access",
}


class _Registered(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def organization_id(self) -> str | None: ...


def principal_for(participant: _Registered) -> Principal:
    """A registered participant as the gateway acts for it (what its own token would make it)."""
    return Principal(
        participant=participant.name,
        kind=participant.kind,
        client_id=participant.name,
        scopes=frozenset({"system/*.read"}),
        purpose=DEFAULT_PURPOSE.get(participant.kind),
        organization_id=participant.organization_id,
    )


_HISTORY_LIMIT = 100_000


@dataclass(slots=True)
class SearchPage:
    """One page of a search: the caller's own terms (for links), what ran, what it found."""

    request: SearchRequest
    query: SearchRequest
    result: SearchResult


class DataPath:
    """Stored resources as one principal may see and change them (one per request)."""

    def __init__(
        self,
        store: Store,
        principal: Principal,
        *,
        enforce: bool = True,
        operator: bool = False,
        now: datetime | None = None,
    ) -> None:
        self.store = store
        self.principal = principal
        self.enforce = enforce and not operator
        self.operator = operator
        self.now = now

    @classmethod
    def for_operator(cls, store: Store) -> DataPath:
        """The operator CLI's path: bulk import, directory sync, audit look-ups."""
        return cls(store, OPERATOR, operator=True)

    @property
    def fhir_base(self) -> str:
        return self.store.fhir_base

    def gate(self, interaction: str, *, audit: bool = True) -> ConsentGate:
        return ConsentGate(self.store, self.principal, interaction=interaction, audit=audit)

    # --- transactions ----------------------------------------------------------------------

    @asynccontextmanager
    async def write(
        self,
        operation: str = "write",
        *,
        link_identities: bool = False,
        allow_consent: bool = False,
        interaction: str = "update",
    ) -> AsyncIterator[GuardedWriter]:
        """One guarded write transaction; its disclosures are audited after the commit."""
        gate = self.gate(interaction)
        async with self.store.write(operation) as raw:
            gate.connection = raw.conn
            try:
                yield GuardedWriter(
                    raw,
                    self.principal,
                    gate,
                    enforce=self.enforce,
                    operator=self.operator,
                    link_identities=link_identities,
                    allow_consent=allow_consent,
                )
            finally:
                gate.connection = None
        await gate.flush()

    # --- reads -----------------------------------------------------------------------------

    async def _hide_deleted(self, rtype: str, rid: str) -> None:
        """A deleted resource is 410 only for whoever could see it; 404 (unknown) otherwise."""
        if not self.enforce:
            return
        async with self.store.read_connection() as conn:
            previous = await last_content(conn, rtype, rid)
        if previous is None:
            raise NotFound(f"{rtype}/{rid} is not known")
        gate = self.gate("read", audit=False)
        if not (await gate.sees(previous, record_denials=False)).permitted:
            raise NotFound(f"{rtype}/{rid} is not known")

    async def read(self, rtype: str, rid: str, *, interaction: str = "read") -> dict[str, Any]:
        """The current version as the caller may see it (404 when hidden), audited.

        One read connection serves the row and the consent look-ups; the AuditEvent is
        committed after it is given back (and before the answer).
        """
        if not self.enforce:
            try:
                return await self.store.read(rtype, rid)
            except Gone:
                await self._hide_deleted(rtype, rid)
                raise
        gate = self.gate(interaction)
        try:
            async with self.store.read_connection() as conn:
                resource = await self.store.read(rtype, rid, conn=conn)
                gate.connection = conn
                try:
                    return await gate.check(resource)
                finally:
                    gate.connection = None
        except Gone:
            await self._hide_deleted(rtype, rid)
            raise
        finally:
            await gate.flush()

    async def _shown(self, interaction: str, resource: dict[str, Any]) -> dict[str, Any]:
        if not self.enforce:
            return resource
        gate = self.gate(interaction)
        try:
            return await gate.check(resource)
        finally:
            await gate.flush()

    async def vread(self, rtype: str, rid: str, version: str) -> dict[str, Any]:
        try:
            resource = await self.store.vread(rtype, rid, version)
        except Gone:
            await self._hide_deleted(rtype, rid)
            raise
        return await self._shown("vread", resource)

    async def read_many(self, refs: list[str], *, interaction: str) -> list[dict[str, Any]]:
        """The current versions of ``Type/id`` references the caller may see, audited."""
        found: list[dict[str, Any]] = []
        async with self.store.read_connection() as conn:
            for ref in refs:
                rtype, _, rid = ref.partition("/")
                try:
                    found.append(await self.store.read(rtype, rid, conn=conn))
                except (NotFound, Gone):
                    continue
        if not self.enforce or not found:
            return found
        gate = self.gate(interaction)
        decisions = await gate.decide(found)
        shown = [dict(d.resource) for d in decisions if d.resource is not None]
        gate.disclose(shown)
        await gate.flush()
        return shown

    async def search(
        self,
        rtype: str,
        items: list[tuple[str, str]],
        *,
        lenient: bool = False,
        default_count: int = 50,
        max_count: int = 500,
    ) -> SearchPage:
        """One page of a search; hidden resources are dropped before paging and counting."""

        def parse(pairs: list[tuple[str, str]]) -> SearchRequest:
            return self.store.parse(
                rtype, pairs, lenient=lenient, default_count=default_count, max_count=max_count
            )

        request = parse(list(items))  # validates everything and keeps the caller's own terms
        if not self.enforce:
            return SearchPage(request, request, await self.store.search(request))
        gate = self.gate("search-type")
        query = parse(await resolve_guarded_joins(self.store, self.principal, rtype, list(items)))
        result = await self.store.search(query, visibility=gate)
        gate.disclose(result.matches + result.included)
        await gate.flush()
        return SearchPage(request, query, result)

    async def history(
        self,
        rtype: str | None,
        rid: str | None,
        *,
        since: datetime | None,
        count: int,
        offset: int,
    ) -> tuple[list[HistoryEntry], int]:
        """Versions newest first; every version decided, a deletion shown where its resource was."""
        if not self.enforce:
            return await self.store.history(rtype, rid, since=since, count=count, offset=offset)
        gate = self.gate("history-instance" if rid else "history-type")
        everything, _ = await self.store.history(rtype, rid, since=since, count=_HISTORY_LIMIT)
        versions = [e for e in everything if e.resource is not None]
        decisions = await gate.decide([e.resource for e in versions if e.resource is not None])
        seen: set[str] = set()
        shown: dict[tuple[str, str, int], dict[str, Any]] = {}
        for entry, decision in zip(versions, decisions, strict=True):
            if decision.resource is not None:
                seen.add(f"{entry.resource_type}/{entry.id}")
                shown[(entry.resource_type, entry.id, entry.version)] = dict(decision.resource)
        visible: list[HistoryEntry] = []
        for entry in everything:
            key = (entry.resource_type, entry.id, entry.version)
            if entry.resource is None and f"{entry.resource_type}/{entry.id}" in seen:
                visible.append(entry)
            elif key in shown:
                entry.resource = shown[key]
                visible.append(entry)
        if rid is not None and not visible:
            await gate.flush()
            raise NotFound(f"{rtype}/{rid} is not known")
        page = visible[offset : offset + count]
        gate.disclose([e.resource for e in page if e.resource is not None])
        await gate.flush()
        return page, len(visible)

    async def everything(
        self, patient_id: str, *, count: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The patient and every resource that refers to it, as far as the caller may see."""
        patient = await self.store.read("Patient", patient_id)
        related = await self.store.referring_to("Patient", patient_id)
        if not self.enforce:
            everything = [patient, *related]
            return everything[offset : offset + count], len(everything)
        gate = self.gate("operation")
        try:
            patient = await gate.check(patient)
            related = await gate.includes(related, [patient])
            everything = [patient, *related]
            page = everything[offset : offset + count]
            gate.disclose(page)
        finally:
            await gate.flush()
        return page, len(everything)

    # --- REST writes -----------------------------------------------------------------------

    def _incoming(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A client's resource as the gateway will consider it: no forged gateway marks."""
        if resource.get("resourceType") == "AuditEvent":
            raise MethodNotAllowed("AuditEvents are written by the gateway only (append-only)")
        if self.operator:
            return dict(resource)  # the operator's import keeps the authors it was given
        return strip_gateway_tags(resource)

    async def _check_consent(self, writer: GuardedWriter, consent: dict[str, Any]) -> None:
        """The Consent's shape, and that its recorder already holds a record of the citizen."""
        problems = [
            i
            for i in validate_consent(consent, submitted_by_kind=self.principal.kind)
            if i.severity in ("error", "fatal")
        ]
        if problems:
            raise UnprocessableResource(
                "the Consent does not meet Brobygger's consent profile",
                issues=[Issue("processing", i.message, i.expression) for i in problems],
            )
        patient = patient_of(consent)
        if self.operator or self.principal.kind == "citizen-portal" or patient is None:
            return  # the write policy binds the portal to its own citizen
        if not await self._holds_record(writer, patient.split("/", 1)[1]):
            raise Forbidden(
                "a participant records a consent only for a citizen it already holds a record of",
                expression="Consent.patient",
            )

    async def _holds_record(self, writer: GuardedWriter, patient_id: str) -> bool:
        """Whether the caller wrote the citizen's Patient or sees a record of the citizen."""
        patient = await writer.read("Patient", patient_id)
        if patient is not None and author_of(patient) == self.principal.participant:
            return True
        decisions = await writer.gate.record_decisions(patient_id)
        return any(d.permitted and d.rule != "directory" for d in decisions)

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        """REST create; with ``if_none_exist`` a *visible* match is returned (disclosed)."""
        incoming = self._incoming(resource)
        incoming.pop("id", None)
        is_consent = incoming.get("resourceType") == "Consent"
        async with self.write("create", allow_consent=is_consent, interaction="create") as writer:
            if is_consent:
                await self._check_consent(writer, incoming)
            result = await writer.create(incoming, if_none_exist=if_none_exist)
            if result.matched_existing:
                writer.disclose(result.resource)
            elif is_consent:
                await audit_log.append(
                    writer.conn, [consent_change_event(self.principal, result.resource, "create")]
                )
        return result

    async def update(
        self, rtype: str, rid: str, resource: dict[str, Any], *, if_match: str | None = None
    ) -> WriteResult:
        """REST update (or create with a client id), as the write policy allows."""
        incoming = self._incoming({**resource, "id": rid})
        is_consent = rtype == "Consent"
        async with self.write("update", allow_consent=is_consent) as writer:
            if is_consent:
                await self._check_consent(writer, incoming)
            result = await writer.put(incoming, if_match=if_match)
            if is_consent and not result.unchanged:
                action = "create" if result.created else "update"
                await audit_log.append(
                    writer.conn, [consent_change_event(self.principal, result.resource, action)]
                )
        return result

    async def delete(self, rtype: str, rid: str) -> int | None:
        if rtype == "AuditEvent":
            raise MethodNotAllowed("AuditEvents are append-only")
        async with self.write("delete", allow_consent=rtype == "Consent") as writer:
            return await writer.delete(rtype, rid)

    async def bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """A transaction (all or nothing) or a batch (each entry alone)."""
        entries = bundle.get("entry", [])
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            # Consent changes are audited one by one at /fhir/Consent; none travels in a Bundle.
            resource = entry.get("resource")
            url = str((entry.get("request") or {}).get("url", ""))
            method = str((entry.get("request") or {}).get("method", "GET")).upper()
            named = url.removeprefix(self.fhir_base + "/").split("?")[0].split("/")[0]
            carried = isinstance(resource, dict) and resource.get("resourceType") == "Consent"
            if carried or (named == "Consent" and method != "GET"):
                raise BadRequest(
                    "record or change a Consent at /fhir/Consent, not inside a Bundle",
                    expression=f"Bundle.entry[{i}].request.url",
                )
            if isinstance(resource, dict):
                entry["resource"] = self._incoming(resource)
        if bundle.get("type") == "transaction":
            async with self.write("transaction", interaction="read") as writer:
                return await run_transaction_in(writer, bundle)
        return await run_batch(
            lambda: self.write("batch", interaction="read"), bundle, self.fhir_base
        )


__all__ = ["DEFAULT_PURPOSE", "OPERATOR", "DataPath", "SearchPage", "principal_for"]
