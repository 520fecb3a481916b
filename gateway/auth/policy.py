"""What each participant kind may ask for at ``POST /auth/token``: scopes, purposes, citizen.

:data:`TOKEN_POLICIES` is the one table (docs/auth.md shows it); :func:`grant` applies it to a
token request. Everything a request asks for must be allowed for the client's kind, or the
whole request is refused with an OAuth error naming what was refused — nothing is silently
dropped, so a client never works on a token narrower than it believes:

- a scope that is not a scope of this server, or not one the kind may hold: ``invalid_scope``;
- a purpose of use this server does not know: ``invalid_request`` (from
  :func:`gateway.auth.tokens.parse_purpose`); a known one the kind may not use:
  ``invalid_scope``.

A scope is necessary, not sufficient: every read also goes through the consent engine for the
token's purpose, and the citizen portal's ``patient/`` scopes reach only its citizen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from consent._codes import (
    CITIZEN_ACCESS,
    CITIZEN_PORTAL,
    EMPLOYER,
    GP,
    HOSPITAL,
    JOBCENTRE,
    MEDICAL_STATEMENT,
    REHAB_UNIT,
    REHABILITATION_PLANNING,
    ROUND_TABLE_MEETING,
    SICKNESS_BENEFIT_FOLLOW_UP,
)
from gateway.auth.assertions import InvalidClient, InvalidScope
from gateway.auth.principal import Action, Scope, ScopeContext, parse_scope
from gateway.auth.tokens import parse_purpose

TREAT: Final = "TREAT"
HOPERAT: Final = "HOPERAT"


@dataclass(frozen=True, slots=True)
class Permission:
    """One thing a kind may be granted: ``action`` on ``resource_type`` ("*": every type)."""

    context: ScopeContext
    resource_type: str
    action: Action

    def covers(self, context: ScopeContext, resource_type: str, action: Action) -> bool:
        return (
            self.context == context
            and self.resource_type in ("*", resource_type)
            and self.action == action
        )

    def __str__(self) -> str:
        return f"{self.context}/{self.resource_type}.{self.action}"


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What one participant kind may ask for at the token endpoint."""

    permissions: tuple[Permission, ...]
    purposes: frozenset[str]
    # Granted when the request names no scope.
    default_scopes: tuple[str, ...]
    # Used when the request names no purpose (None: the token carries no purpose).
    default_purpose: str | None = None
    # The token acts for one citizen: a patient context is required, and it is the citizen the
    # client assertion vouches for (its signed ``cpr`` claim, gateway/auth/citizens.py).
    citizen_bound: bool = False

    def allows(self, scope: Scope) -> bool:
        """Every action of ``scope`` on its type is a permission of this kind.

        ``system/*.read`` needs the permission for every type; ``system/Task.cu`` needs write
        on Task (``system/*.write`` covers it).
        """
        return all(
            any(p.covers(scope.context, scope.resource_type, action) for p in self.permissions)
            for action in scope.actions
        )

    def describe_scopes(self) -> str:
        """The allowed scopes for an error message or the docs."""
        listed = ", ".join(str(p) for p in self.permissions)
        per_type = ", ".join(
            f"{p.context}/<Type>.{p.action}" for p in self.permissions if p.resource_type == "*"
        )
        return f"{listed} (also per resource type: {per_type})" if per_type else listed


def _permissions(context: ScopeContext, *spec: tuple[str, Action]) -> tuple[Permission, ...]:
    return tuple(Permission(context, rtype, action) for rtype, action in spec)


_SYSTEM_READ_WRITE = _permissions("system", ("*", "read"), ("*", "write"))

# Participant kind (consent/_codes.py, the directory's ``kind``) → its token policy.
TOKEN_POLICIES: Final[Mapping[str, TokenPolicy]] = MappingProxyType(
    {
        HOSPITAL: TokenPolicy(
            _SYSTEM_READ_WRITE,
            frozenset({TREAT, HOPERAT, REHABILITATION_PLANNING}),
            ("system/*.read",),
        ),
        GP: TokenPolicy(
            _SYSTEM_READ_WRITE,
            frozenset({TREAT, MEDICAL_STATEMENT}),
            ("system/*.read",),
        ),
        REHAB_UNIT: TokenPolicy(
            _SYSTEM_READ_WRITE,
            frozenset({TREAT, REHABILITATION_PLANNING, ROUND_TABLE_MEETING}),
            ("system/*.read",),
        ),
        JOBCENTRE: TokenPolicy(
            _SYSTEM_READ_WRITE,
            frozenset({SICKNESS_BENEFIT_FOLLOW_UP, ROUND_TABLE_MEETING, REHABILITATION_PLANNING}),
            ("system/*.read",),
        ),
        # Reads (its mailbox and acknowledgements need no write scope), for the meeting; and,
        # as a party of the shared plan (docs/shared-plan.md), writes its own part of it: the
        # gradual-return steps it proposes (CarePlan), hours worked (Observation), offers and
        # the workplace-visit note (Communication), its own activities (Task). What it may
        # reference — the citizen, the plan — it must first see, under the citizen's consent.
        EMPLOYER: TokenPolicy(
            _permissions(
                "system",
                ("*", "read"),
                ("CarePlan", "write"),
                ("Observation", "write"),
                ("Communication", "write"),
                ("Task", "write"),
                # The sender and receiver entries of its messages (hours by message): they
                # match the registered participants; write rules 5 and 6 keep them as they are.
                ("Organization", "write"),
            ),
            frozenset({ROUND_TABLE_MEETING}),
            ("system/*.read",),
        ),
        # One citizen's own data, that citizen's consents (record and withdraw), and the
        # citizen's own goals and comments on the shared plan.
        CITIZEN_PORTAL: TokenPolicy(
            _permissions(
                "patient",
                ("*", "read"),
                ("Consent", "write"),
                ("Goal", "write"),
                ("Communication", "write"),
            ),
            frozenset({CITIZEN_ACCESS}),
            ("patient/*.read",),
            default_purpose=CITIZEN_ACCESS,
            citizen_bound=True,
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Grant:
    """What the token endpoint grants for one request (the patient context comes apart)."""

    scopes: list[str]
    purpose: str | None
    policy: TokenPolicy


def policy_for(kind: str) -> TokenPolicy:
    policy = TOKEN_POLICIES.get(kind)
    if policy is None:  # the directory accepts only known kinds; a stale row gets nothing
        raise InvalidClient(f"participants of kind {kind!r} cannot get access tokens")
    return policy


def grant_scopes(kind: str, requested: str | None) -> list[str]:
    """The requested scopes (each once, in order), or the kind's default when none were asked.

    Raises InvalidScope naming every requested scope that is malformed or not allowed.
    """
    policy = policy_for(kind)
    wanted = list(dict.fromkeys((requested or "").split()))
    if not wanted:
        return list(policy.default_scopes)
    unknown = [s for s in wanted if parse_scope(s) is None]
    if unknown:
        raise InvalidScope(
            f"{_quoted(unknown)} {_is_are(unknown)} not a scope of this server; use "
            "system/<Type or *>.<read|write|*|cruds> (patient/… for the citizen portal), "
            "space-separated"
        )
    refused = [s for s in wanted if not policy.allows(_parsed(s))]
    if refused:
        raise InvalidScope(
            f"{_quoted(refused)} {_is_are(refused)} not allowed for {kind} participants; "
            f"it may ask for {policy.describe_scopes()}"
        )
    return wanted


def grant_purpose(kind: str, requested: str | None) -> str | None:
    """The purpose of use (bare code), the kind's default when none was asked.

    Raises InvalidRequest for an unknown purpose, InvalidScope for one the kind may not use.
    """
    policy = policy_for(kind)
    purpose = parse_purpose(requested)
    if purpose is None:
        return policy.default_purpose
    if purpose not in policy.purposes:
        raise InvalidScope(
            f"purpose {purpose!r} is not allowed for {kind} participants; "
            f"it may ask for {', '.join(sorted(policy.purposes))}"
        )
    return purpose


def grant(kind: str, scope: str | None, purpose: str | None) -> Grant:
    """Scopes and purpose for a token request of a ``kind`` participant (or an OAuth error)."""
    scopes = grant_scopes(kind, scope)
    return Grant(scopes, grant_purpose(kind, purpose), policy_for(kind))


def _parsed(text: str) -> Scope:
    scope = parse_scope(text)
    assert scope is not None  # noqa: S101 - checked by the caller
    return scope


def _quoted(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def _is_are(items: list[str]) -> str:
    return "is" if len(items) == 1 else "are"
