"""The engine's values: who asks (Requester), what it decided (Decision), compiled Consents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from consent._codes import (
    CONSENT_SCOPE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    PARTICIPANT_KIND_SYSTEM,
    PARTICIPATION_TYPE_SYSTEM,
    PATIENT_PRIVACY,
    RECIPIENT_ROLE,
    RESOURCE_TYPES_SYSTEM,
)
from consent._dates import Interval, parse_interval, parse_period
from consent._resources import local_reference

Effect = Literal["permit", "deny", "permit-with-redaction"]
ProvisionType = Literal["permit", "deny"]


@dataclass(frozen=True, slots=True)
class Requester:
    """The participant asking, as the gateway knows it from the access token.

    ``organization`` is a reference string (``Organization/org-<name>``); ``purpose`` the bare
    purpose-of-use code; ``patient`` the ``Patient/<id>`` a citizen-portal user acts for.
    """

    participant: str
    kind: str
    organization: str | None = None
    purpose: str | None = None
    patient: str | None = None
    organization_ref: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalised once, so absolute or versioned references still compare equal.
        object.__setattr__(self, "organization_ref", local_reference(self.organization))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one resource; what the gateway returns and what its AuditEvent records.

    ``rule`` is a stable short code (see the package docstring), ``consent`` the
    ``Consent/<id>`` that permitted (or, for a deny exception, refused) the disclosure,
    ``resource`` what may be disclosed (a redacted copy for ``permit-with-redaction``; None
    when denied), ``target`` the ``Type/id`` decided on, ``reason`` a text without health data.
    """

    effect: Effect
    rule: str
    reason: str
    consent: str | None = None
    resource: Mapping[str, Any] | None = None
    target: str | None = None

    @property
    def permitted(self) -> bool:
        return self.effect != "deny"


@dataclass(frozen=True, slots=True)
class Actor:
    """One ``provision.actor``: an Organization reference or a participant kind."""

    recipient: bool  # role is v3-ParticipationType IRCP
    organization: str | None
    kind: str | None


@dataclass(frozen=True, slots=True)
class CompiledProvision:
    """A provision reduced to sets; ``None`` means "not restricted by this element"."""

    type: ProvisionType
    period: Interval | None = None
    data_period: Interval | None = None
    actors: tuple[Actor, ...] | None = None
    purposes: frozenset[tuple[str, str]] | None = None
    labels: frozenset[str] | None = None
    classes: frozenset[str] | None = None
    data: frozenset[str] | None = None
    # A restriction the engine cannot evaluate (provision.code, a malformed period): a permit
    # then matches nothing, a deny ignores it (both fail closed).
    unsupported: bool = False
    children: tuple[CompiledProvision, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledConsent:
    """A Consent as the engine uses it; build with :func:`compile_consent` once per version."""

    reference: str | None
    patient: str | None
    status: str | None
    patient_privacy: bool
    recorded: datetime | None
    provision: CompiledProvision | None

    @property
    def usable(self) -> bool:
        """Active, a patient-privacy consent, about a patient, with a provision."""
        return (
            self.status == "active"
            and self.patient_privacy
            and self.patient is not None
            and self.provision is not None
        )

    def in_force(self, now: datetime) -> bool:
        """Usable and ``now`` inside the top provision's period."""
        if not self.usable or self.provision is None:
            return False
        period = self.provision.period
        return period is None or period.contains_instant(now)


def _codings(value: Any) -> list[Mapping[str, Any]]:
    """The Codings of a CodeableConcept (or a list of them, or of Codings)."""
    items = value if isinstance(value, list) else [value]
    found: list[Mapping[str, Any]] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if "coding" in item and isinstance(item["coding"], list):
            found.extend(c for c in item["coding"] if isinstance(c, Mapping))
        elif "code" in item or "system" in item:
            found.append(item)
    return found


def _compile_actor(actor: Any) -> Actor:
    if not isinstance(actor, Mapping):
        return Actor(recipient=False, organization=None, kind=None)
    recipient = any(
        c.get("system") == PARTICIPATION_TYPE_SYSTEM and c.get("code") == RECIPIENT_ROLE
        for c in _codings(actor.get("role"))
    )
    reference = actor.get("reference")
    organization = kind = None
    if isinstance(reference, Mapping):
        local = local_reference(reference.get("reference"))
        if local is not None and local.startswith("Organization/"):
            organization = local
        identifier = reference.get("identifier")
        if isinstance(identifier, Mapping) and identifier.get("system") == PARTICIPANT_KIND_SYSTEM:
            value = identifier.get("value")
            kind = value if isinstance(value, str) else None
    return Actor(recipient=recipient, organization=organization, kind=kind)


def _compile_provision(provision: Mapping[str, Any]) -> CompiledProvision:
    unsupported = "code" in provision
    kind: ProvisionType = "deny" if provision.get("type") == "deny" else "permit"
    if provision.get("type") not in ("permit", "deny"):
        unsupported = True
    period = data_period = None
    if "period" in provision:
        period = parse_period(provision["period"])
        unsupported = unsupported or period is None
    if "dataPeriod" in provision:
        data_period = parse_period(provision["dataPeriod"])
        unsupported = unsupported or data_period is None
    actors = purposes = labels = classes = data = None
    if provision.get("actor"):
        actors = tuple(_compile_actor(a) for a in provision["actor"])
    if provision.get("purpose"):
        purposes = frozenset(
            (str(c.get("system")), str(c.get("code"))) for c in _codings(provision["purpose"])
        )
    if provision.get("securityLabel"):
        labels = frozenset(
            str(c.get("code"))
            for c in _codings(provision["securityLabel"])
            if c.get("system") == DATA_CATEGORY_SYSTEM
        )
    if provision.get("class"):
        classes = frozenset(
            str(c.get("code"))
            for c in _codings(provision["class"])
            if c.get("system") in (None, RESOURCE_TYPES_SYSTEM)
        )
    if provision.get("data"):
        entries = provision["data"] if isinstance(provision["data"], list) else []
        data = frozenset(
            ref
            for entry in entries
            if isinstance(entry, Mapping) and isinstance(entry.get("reference"), Mapping)
            for ref in [local_reference(entry["reference"].get("reference"))]
            if ref is not None
        )
    nested = provision.get("provision")
    children = tuple(
        _compile_provision(child)
        for child in (nested if isinstance(nested, list) else [])
        if isinstance(child, Mapping)
    )
    return CompiledProvision(
        type=kind,
        period=period,
        data_period=data_period,
        actors=actors,
        purposes=purposes,
        labels=labels,
        classes=classes,
        data=data,
        unsupported=unsupported,
        children=children,
    )


def compile_consent(consent: Mapping[str, Any]) -> CompiledConsent:
    """Reduce a Consent (FHIR JSON) to the frozen structure the engine matches against."""
    ident = consent.get("id")
    reference = f"Consent/{ident}" if isinstance(ident, str) and ident else None
    patient_field = consent.get("patient")
    patient = None
    if isinstance(patient_field, Mapping):
        local = local_reference(patient_field.get("reference"))
        patient = local if local is not None and local.startswith("Patient/") else None
    status = consent.get("status")
    scope_ok = any(
        c.get("code") == PATIENT_PRIVACY and c.get("system") in (None, CONSENT_SCOPE_SYSTEM)
        for c in _codings(consent.get("scope"))
    )
    recorded_interval = parse_interval(consent.get("dateTime"))
    provision = consent.get("provision")
    return CompiledConsent(
        reference=reference,
        patient=patient,
        status=status if isinstance(status, str) else None,
        patient_privacy=scope_ok,
        recorded=recorded_interval.start if recorded_interval is not None else None,
        provision=_compile_provision(provision) if isinstance(provision, Mapping) else None,
    )
