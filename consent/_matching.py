"""Matching one resource request against compiled Consent provisions.

A provision applies when every element it sets matches (an unset element does not restrict);
its nested provisions are exceptions evaluated only where it applies, a matching ``deny``
outranking a matching ``permit``. Permits fail closed and denies fail open (to denial): a
permit with an element the engine cannot evaluate matches nothing, a deny ignores that element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from consent._codes import MENTAL_HEALTH, PURPOSE_OF_USE_SYSTEM, PURPOSES
from consent._dates import Interval
from consent._model import Actor, CompiledConsent, CompiledProvision, Requester
from consent._resources import Resource, data_date

Outcome = Literal["permit", "deny"] | None
_UNSET: Interval = Interval()


@dataclass(slots=True)
class Request:
    """One (requester, resource) pair with what matching needs, computed once."""

    requester: Requester
    resource: Resource
    resource_type: str
    reference: str | None
    labels: frozenset[str]
    now: datetime
    purpose: tuple[str, str] | None = field(init=False)
    _date: Interval | None = field(default=_UNSET, init=False)

    def __post_init__(self) -> None:
        code = self.requester.purpose
        self.purpose = None if code is None else (PURPOSES.get(code, PURPOSE_OF_USE_SYSTEM), code)

    @property
    def date(self) -> Interval | None:
        if self._date is _UNSET:  # computed only when a provision has a dataPeriod
            self._date = data_date(self.resource)
        return self._date


def _actor_matches(actor: Actor, request: Request, *, as_permit: bool) -> bool:
    if as_permit and not actor.recipient:
        return False
    requester = request.requester
    if actor.organization is not None and actor.organization == requester.organization_ref:
        return True
    return actor.kind is not None and actor.kind == requester.kind


def _labels_match(
    labels: frozenset[str] | None, request: Request, *, as_permit: bool, strict: bool
) -> bool:
    data = request.labels
    if not as_permit:
        return labels is None or bool(data & labels)
    mental = MENTAL_HEALTH in data
    if labels is None:
        # Unrestricted covers every category except mental-health, which must be named.
        return not (mental and strict)
    if not data:
        return False  # unlabelled data needs a provision not restricted by securityLabel
    if mental and strict and MENTAL_HEALTH not in labels:
        return False
    rest = data - {MENTAL_HEALTH} if mental else data
    return not rest or bool(rest & labels)


def _applies(provision: CompiledProvision, request: Request, *, strict: bool) -> bool:
    as_permit = provision.type == "permit"
    if provision.unsupported and as_permit:
        return False
    if provision.period is not None and not provision.period.contains_instant(request.now):
        return False
    if provision.actors is not None and not any(
        _actor_matches(actor, request, as_permit=as_permit) for actor in provision.actors
    ):
        return False
    if provision.purposes is not None and request.purpose not in provision.purposes:
        return False
    if provision.classes is not None and request.resource_type not in provision.classes:
        return False
    if provision.data is not None and request.reference not in provision.data:
        return False
    if not _labels_match(provision.labels, request, as_permit=as_permit, strict=strict):
        return False
    if provision.data_period is not None:
        date = request.date
        if date is None:
            return not as_permit  # an undated resource is outside every permitted data period
        if as_permit:
            return provision.data_period.contains(date)
        return provision.data_period.overlaps(date)
    return True


def evaluate(provision: CompiledProvision, request: Request, *, strict: bool = True) -> Outcome:
    """``permit`` / ``deny`` when the provision (or a nested exception) applies, else None.

    ``strict=False`` leaves out the mental-health naming rule; the engine uses it to find
    deny exceptions whatever the labels, and to explain a "mental-health-not-named" denial.
    """
    if not _applies(provision, request, strict=strict):
        return None
    outcome: Outcome = provision.type
    for child in provision.children:
        nested = evaluate(child, request, strict=strict)
        if nested == "deny":
            return "deny"
        if nested == "permit":
            outcome = "permit"
    return outcome


@dataclass(frozen=True, slots=True)
class ConsentVerdict:
    """What the applicable consents say about one request."""

    permitted_by: CompiledConsent | None = None
    denied_by: CompiledConsent | None = None
    mental_health_blocked_by: CompiledConsent | None = None


def _latest_first(consent: CompiledConsent) -> tuple[float, str]:
    recorded = consent.recorded.timestamp() if consent.recorded is not None else float("-inf")
    return (-recorded, consent.reference or "")


def judge(consents: list[CompiledConsent], request: Request) -> ConsentVerdict:
    """Combine the verdicts of in-force consents: any deny exception wins, then any permit.

    Order-independent: the consent named is the first by (latest dateTime, reference).
    """
    permits: list[CompiledConsent] = []
    denies: list[CompiledConsent] = []
    blocked: list[CompiledConsent] = []
    mental = MENTAL_HEALTH in request.labels
    for consent in consents:
        if consent.provision is None:
            continue
        strict = evaluate(consent.provision, request, strict=True)
        relaxed = evaluate(consent.provision, request, strict=False) if mental else strict
        if strict == "deny" or relaxed == "deny":
            denies.append(consent)
        elif strict == "permit":
            permits.append(consent)
        elif relaxed == "permit":
            blocked.append(consent)
    if denies:
        return ConsentVerdict(denied_by=min(denies, key=_latest_first))
    if permits:
        return ConsentVerdict(permitted_by=min(permits, key=_latest_first))
    if blocked:
        return ConsentVerdict(mental_health_blocked_by=min(blocked, key=_latest_first))
    return ConsentVerdict()
