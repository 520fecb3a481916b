"""The ingest pipeline: a legacy document → checked FHIR → the store, in one transaction.

    map (mappings) → validate (profiles) → check the sender → open one write transaction:
    same bytes stored already? (unchanged) → older than the stored version? (refused) →
    link a statement to its request → run the Bundle → complete the request's Task, retract
    what a newer version no longer holds, supersede the older original → commit.

Everything of one document is stored, or nothing: every step after the checks runs inside
the same database transaction, and any error rolls all of it back. ``brobygger import``,
``POST /ingest/{format}`` and (later) messaging all come through :func:`ingest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from consent import (
    ADDRESSEE_SYSTEM,
    EMPLOYER_REQUESTED_STATEMENT,
    LEGAL_BASIS_SYSTEM,
    REQUESTED_STATEMENT,
    stamp_author,
)
from gateway.auth.principal import Principal
from gateway.coordination.warning import add_score_reasons
from gateway.data import DataPath, GuardedWriter, principal_for, run_transaction_in
from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    Issue,
    PayloadTooLarge,
    UnprocessableResource,
    operation_outcome,
)
from gateway.ingest.linking import (
    answering_statement,
    complete_answered_tasks,
    disambiguate_organizations,
    link_back,
    link_statement_to_request,
    read_all,
    read_or_none,
    retract_missing,
    token_criteria,
)
from gateway.ingest.sender import SENDER_XPATH, DocumentSender, document_sender, registered_sender
from gateway.limits import xml_limit_error
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.participants.identifiers import CVR, EAN, MUNICIPALITY, SOR, YDER
from gateway.store.repository import Store, WriteResult
from mappings import (
    MAX_DOCUMENT_BYTES,
    MappingError,
    MappingIssue,
    MappingResult,
    SourceDocument,
    XmlLimitExceeded,
    XmlLimits,
    map_document,
)
from profiles import validate_incoming

if TYPE_CHECKING:
    from gateway.jobs import Offload

Status = Literal["accepted", "unchanged", "updated"]
SHA256_SYSTEM = "http://brobygger.dk/fhir/sid/sha256"
# meta.source for documents imported by the operator from an unregistered sender.
UNREGISTERED_AUTHOR = "operator-import"


class StaleDocument(Conflict):
    """An export older than the stored version of the same document: refused, nothing stored."""


@dataclass(slots=True)
class Counts:
    """What the transaction did to the resources of the document."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(slots=True)
class IngestResult:
    status: Status
    format: str
    source: SourceDocument
    response: dict[str, Any]
    warnings: list[Issue] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    sender: str | None = None

    def outcome(self) -> dict[str, Any]:
        """The warnings as an OperationOutcome (``information`` when there are none)."""
        issues = self.warnings or [
            Issue("informational", f"document {self.status}", severity="information")
        ]
        return operation_outcome(issues)


# --- errors at the edge ------------------------------------------------------------------

_SEVERITY = {"fatal": "fatal", "error": "error", "warning": "warning", "information": "information"}


def _issue(issue: MappingIssue) -> Issue:
    code = "structure" if issue.severity == "fatal" else "invalid"
    if issue.severity in ("warning", "information"):
        code = "informational"
    return Issue(code, issue.text, issue.expression, severity=_SEVERITY[issue.severity])


def mapping_error(exc: MappingError, max_bytes: int) -> GatewayError:
    """Not XML / not a known format → 400; breaks the format's rules → 422; beyond a
    structural limit → 400 naming the limit."""
    if isinstance(exc, XmlLimitExceeded):
        return xml_limit_error(exc)
    issues = [_issue(i) for i in exc.issues]
    if any("larger than the limit" in i.text for i in exc.issues):
        return PayloadTooLarge(f"the document is larger than {max_bytes} bytes", issues=issues)
    if any(i.severity == "fatal" and i.expression in ("/", "/*") for i in exc.issues):
        return BadRequest("the document cannot be read as a supported format", issues=issues)
    return UnprocessableResource("the document breaks its format's rules", issues=issues)


def _map(
    xml_bytes: bytes,
    format: str | None,
    now: datetime,
    sender: str | None,
    max_bytes: int,
    limits: XmlLimits | None = None,
) -> MappingResult:
    try:
        return map_document(
            xml_bytes, format=format, now=now, sender=sender, max_bytes=max_bytes, limits=limits
        )
    except MappingError as exc:
        raise mapping_error(exc, max_bytes) from exc


@dataclass(slots=True)
class Checked:
    """What the worker made of a document: the mapping, its warnings, and the validation
    error (raised by the caller only after it has checked the scopes)."""

    mapped: MappingResult
    warnings: list[Issue]
    invalid: UnprocessableResource | None = None


def map_and_validate(
    xml_bytes: bytes,
    format: str | None,
    now: datetime,
    sender: str | None,
    max_bytes: int,
    limits: XmlLimits | None,
) -> Checked:
    """The CPU-heavy part of ingest (pure: a worker process runs it, ``gateway.workers``)."""
    mapped = _map(xml_bytes, format, now, sender, max_bytes, limits)
    warnings = [_issue(i) for i in mapped.warnings]
    try:
        warnings += validate_bundle(mapped.bundle)
    except UnprocessableResource as exc:
        return Checked(mapped, warnings, exc)
    return Checked(mapped, warnings)


# Every document is kept as a DocumentReference with its Provenance: a token that may not
# write those is refused before the document is read.
RECORD_TYPES = frozenset({"DocumentReference", "Provenance"})


def validate_bundle(
    bundle: dict[str, Any], *, channel: Literal["ingest", "messaging"] = "ingest"
) -> list[Issue]:
    """Warnings of ``profiles.validate_incoming``; raises ``UnprocessableResource`` on errors."""
    report = validate_incoming(bundle, channel=channel)
    issues = [Issue(i.code, i.text, i.expression, severity=i.severity) for i in report.issues]
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise UnprocessableResource("the mapped Bundle is not valid FHIR", issues=errors)
    return [i for i in issues if i.severity == "warning"]


# --- the store side ----------------------------------------------------------------------


def _as_utc(value: datetime | date | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


async def _provenance_of(writer: GuardedWriter, document_id: str) -> dict[str, Any] | None:
    found = await read_all(writer, "Provenance", f"entity=DocumentReference/{document_id}")
    return found[0] if found else None


async def _unchanged_response(writer: GuardedWriter, document: dict[str, Any]) -> dict[str, Any]:
    """What the stored document produced, as a transaction-response (nothing was written)."""
    resources = [document]
    provenance = await _provenance_of(writer, document["id"])
    if provenance is not None:
        resources.append(provenance)
        for target in provenance.get("target", []):
            rtype, _, rid = str(target.get("reference", "")).partition("/")
            found = await read_or_none(writer, rtype, rid)
            if found is not None:
                resources.append(found)
    for resource in resources:  # returned to the sender: disclosures like any read
        writer.disclose(resource)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": "200 OK",
                    "location": f"{r['resourceType']}/{r['id']}/_history/{r['meta']['versionId']}",
                    "etag": f'W/"{r["meta"]["versionId"]}"',
                    "lastModified": r["meta"]["lastUpdated"],
                },
                "resource": r,
            }
            for r in resources
        ],
    }


async def _stored_versions(writer: GuardedWriter, source: SourceDocument) -> list[dict[str, Any]]:
    """The stored originals of earlier versions of this document (same business identifier)."""
    documents = await read_all(
        writer, "DocumentReference", token_criteria("identifier", source.system, source.value)
    )
    return [d for d in documents if d.get("masterIdentifier", {}).get("value") != source.sha256]


async def _newest_issued(writer: GuardedWriter, documents: list[dict[str, Any]]) -> datetime | None:
    newest: datetime | None = None
    for document in documents:
        provenance = await _provenance_of(writer, document["id"])
        occurred = (provenance or {}).get("occurredDateTime")
        if isinstance(occurred, str):
            issued = _as_utc(occurred)
            newest = issued if newest is None or issued > newest else newest
    return newest


def _stamp(bundle: dict[str, Any], author: str, kind: str | None) -> dict[str, Any]:
    entries = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            entry = {**entry, "resource": stamp_author(resource, author, kind=kind)}
        entries.append(entry)
    return {**bundle, "entry": entries}


# Shared parties are matched across documents; they are nobody's addressed record.
_SHARED = frozenset({"Patient", "Organization", "Practitioner", "PractitionerRole"})
# Identifiers that name one participant (a municipality code names several departments).
_UNIQUE = (SOR, YDER, CVR, EAN)


async def _address(
    store: Store,
    bundle: dict[str, Any],
    receiver: tuple[tuple[str, str], ...],
    receiver_kind: str | None,
) -> dict[str, Any]:
    """Tag what the document produced with its addressee, so the addressee may read it.

    The addressee is the registered participant with one of the receiver's unique
    identifiers (SOR, YDER, CVR, EAN), else the one participant of the receiver's kind with
    its municipality code (the job centre of 0265, not the rehab unit of 0265).
    """
    directory = ParticipantDirectory(store.database)
    addressee = None
    for system, value in receiver:
        if system in _UNIQUE:
            addressee = await directory.find_by_identifier(system, value)
            if addressee is not None:
                break
    if addressee is None and receiver_kind is not None:
        municipal = [
            p
            for p in await directory.list()
            if p.kind == receiver_kind
            and any(
                system == MUNICIPALITY and {"system": system, "value": value} in p.identifiers
                for system, value in receiver
            )
        ]
        addressee = municipal[0] if len(municipal) == 1 else None
    if addressee is None:
        return bundle
    added = [{"system": ADDRESSEE_SYSTEM, "code": addressee.name}]
    basis = _legal_basis(bundle, addressee.kind)
    if basis is not None:
        added.append({"system": LEGAL_BASIS_SYSTEM, "code": basis})
    replaced = {t["system"] for t in added}
    entries = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict) and resource.get("resourceType") not in _SHARED:
            meta = dict(resource.get("meta") or {})
            tags = [t for t in meta.get("tag", []) if t.get("system") not in replaced]
            meta["tag"] = [*tags, *added]
            entry = {**entry, "resource": {**resource, "meta": meta}}
        entries.append(entry)
    return {**bundle, "entry": entries}


# The statements a job centre orders from the GP (the citizen signs the request form): they
# reach the job centre on that legal basis; the employer asks for the Mulighedserklæring.
_JOBCENTRE_FORMS = frozenset({"LAE285", "LAE125", "LAE265"})
_EMPLOYER_FORMS = frozenset({"MULIGHED"})


def _form_codes(bundle: dict[str, Any]) -> set[str]:
    codes = set()
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "QuestionnaireResponse":
            url = str(resource.get("questionnaire", "")).split("|")[0].rsplit("/", 1)[-1]
            codes.add("".join(c for c in url.upper() if c.isalnum()))
    return codes


def _legal_basis(bundle: dict[str, Any], addressee_kind: str) -> str | None:
    """The legal basis on which a medical statement reaches its employment-side addressee."""
    forms = _form_codes(bundle)
    if addressee_kind == "jobcentre" and forms & _JOBCENTRE_FORMS:
        return REQUESTED_STATEMENT
    if addressee_kind == "employer" and forms & _EMPLOYER_FORMS:
        return EMPLOYER_REQUESTED_STATEMENT
    return None


def _counts(results: list[WriteResult]) -> Counts:
    counts = Counts()
    for result in results:
        if result.unchanged:
            counts.unchanged += 1
        elif result.created:
            counts.created += 1
        else:
            counts.updated += 1
    return counts


async def _check_sender(
    store: Store, mapped: MappingResult, sender_participant: str | None
) -> tuple[Participant | None, list[Issue]]:
    """The participant to stamp as author (None: unregistered), and warnings; ``Forbidden``
    on a mismatch."""
    directory = ParticipantDirectory(store.database)
    sender: DocumentSender = document_sender(mapped.bundle)
    where = SENDER_XPATH.get(mapped.format, "/*")
    if sender_participant is not None:
        participant = await directory.find(sender_participant)
        if participant is None or not sender.is_participant(participant):
            raise Forbidden(
                "the authenticated participant is not the document's sender", expression=where
            )
        return participant, []
    found = await registered_sender(directory, sender)
    if found is not None:
        return found, []
    return None, [
        Issue(
            "informational",
            "the document's sender is not a registered participant; stored as an operator import",
            where,
            severity="warning",
        )
    ]


async def ingest(
    store: Store,
    xml_bytes: bytes,
    *,
    format: str | None = None,
    sender_participant: str | None,
    now: datetime,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    authorize: Callable[[set[str]], None] | None = None,
    principal: Principal | None = None,
    limits: XmlLimits | None = None,
    offload: Offload | None = None,
) -> IngestResult:
    """Store one source document; see the module docstring for the steps.

    ``sender_participant`` is the authenticated participant (HTTP, messaging): it must be the
    document's sender. ``None`` is the operator's import: the sender is looked up in the
    participant directory by the document's identifiers (unregistered: a warning).
    Raises ``GatewayError``: 400/413/422 for the document, 403 for the sender, 409 for an
    export older than the stored one (a warning issue; nothing is stored). ``authorize`` is
    given the resource types the document would write (the HTTP layer checks scopes).
    """
    prepared = await prepare(
        store,
        xml_bytes,
        format=format,
        sender_participant=sender_participant,
        now=now,
        max_bytes=max_bytes,
        authorize=authorize,
        limits=limits,
        offload=offload,
    )
    # The document is stored as its sender would store it (the operator's import of a
    # registered sender's file too); only an unregistered sender's file is the operator's own.
    data = (
        DataPath.for_operator(store)
        if prepared.sender is None
        else DataPath(store, principal or principal_for(prepared.sender))
    )
    async with data.write("ingest", link_identities=True, interaction="create") as writer:
        return await store_prepared(writer, prepared, now=now)


@dataclass(slots=True)
class Prepared:
    """A document mapped, validated and checked, ready to be stored in a transaction."""

    mapped: MappingResult
    bundle: dict[str, Any]
    author: str
    warnings: list[Issue]
    # The registered sender (None: an unregistered sender of an operator import).
    sender: Participant | None = None


async def prepare(
    store: Store,
    xml_bytes: bytes,
    *,
    format: str | None = None,
    sender_participant: str | None,
    now: datetime,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    authorize: Callable[[set[str]], None] | None = None,
    limits: XmlLimits | None = None,
    offload: Offload | None = None,
) -> Prepared:
    """The steps before the transaction: authorize, map and validate, check the sender.

    Scopes and the sender's registration are checked before the document is read; reading,
    mapping and validating run in a worker process when ``offload`` is given (the HTTP and
    messaging doors), inline otherwise (``brobygger import``).
    """
    if authorize is not None:
        authorize(set(RECORD_TYPES))
    if sender_participant is not None:
        directory = ParticipantDirectory(store.database)
        if await directory.find(sender_participant) is None:
            raise Forbidden("the authenticated client is not a registered participant")
    args = (xml_bytes, format, now, sender_participant, max_bytes, limits)
    if offload is not None:
        checked = await offload.always(map_and_validate, *args)
    else:
        checked = map_and_validate(*args)
    mapped = checked.mapped
    if authorize is not None:
        authorize({e["resource"]["resourceType"] for e in mapped.bundle.get("entry", [])})
    if checked.invalid is not None:
        raise checked.invalid
    warnings = checked.warnings
    sender, sender_warnings = await _check_sender(store, mapped, sender_participant)
    warnings += sender_warnings
    author = sender.name if sender is not None else UNREGISTERED_AUTHOR
    bundle = _stamp(mapped.bundle, author, sender.kind if sender is not None else None)
    bundle = await _address(store, bundle, mapped.receiver, mapped.receiver_kind)
    return Prepared(mapped, bundle, author, warnings, sender)


async def store_prepared(
    writer: GuardedWriter, prepared: Prepared, *, now: datetime
) -> IngestResult:
    """Store a prepared document inside the caller's open guarded transaction
    (``DataPath.write(link_identities=True)``): every row it reads on the way passes the
    consent gate, and every row it changes the write policy.

    Messaging calls this so that the document commits together with its message record.
    """
    mapped, bundle, author, warnings = (
        prepared.mapped,
        prepared.bundle,
        prepared.author,
        prepared.warnings,
    )
    source = mapped.source
    writer.results.clear()
    same = await writer.find(
        "DocumentReference", token_criteria("identifier", SHA256_SYSTEM, source.sha256)
    )
    if same:
        stored = same[0]
        response = await _unchanged_response(writer, stored)
        counts = Counts(unchanged=len(response["entry"]))
        return IngestResult("unchanged", mapped.format, source, response, warnings, counts, author)
    earlier = await _stored_versions(writer, source)
    newest = await _newest_issued(writer, earlier)
    if newest is not None and _as_utc(source.issued) < newest:
        raise StaleDocument(
            "an older version than the stored one: refused, nothing stored",
            issues=[
                Issue(
                    "conflict",
                    "the document is older than the stored version of the same document "
                    "(same sender and identifier); refused, nothing stored",
                    "/*",
                    severity="warning",
                )
            ],
        )
    await disambiguate_organizations(writer, bundle)
    request_id: str | None = None
    answered: dict[str, Any] | None = None
    if mapped.answers_request is not None:
        request_id = await link_statement_to_request(writer, bundle, mapped.answers_request)
    else:
        answered = await answering_statement(writer, bundle, source, now=now)
    if mapped.format == "jobcentre-case":
        # The scores the caseworker may see become reasons of the early warning.
        bundle = await add_score_reasons(writer, bundle)
    response = await run_transaction_in(writer, bundle)
    # Conditional creates that matched a stored resource wrote nothing.
    matched = len(response["entry"]) - len(writer.results)
    if request_id is not None:
        await complete_answered_tasks(writer, request_id, response, now=now)
    if answered is not None:
        await link_back(writer, answered, response)
    if earlier:
        await retract_missing(writer, source, response, author)
    counts = _counts(writer.results)
    counts.unchanged += matched
    status: Status = "updated" if earlier else "accepted"
    return IngestResult(status, mapped.format, source, response, warnings, counts, author)
