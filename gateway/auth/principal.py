"""Who is calling: the authenticated participant, its granted scopes and purpose of use.

Scopes are SMART's ``<context>/<Type or *>.<action>``: ``system/`` for the departments and
companies acting as themselves, ``patient/`` for the citizen portal acting for one citizen (its
token's ``patient``). :func:`parse_scope` is the one parser of that grammar; the token
endpoint (which scopes may be granted) and :meth:`Principal.allows` (what a granted scope
covers) both use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, cast

Action = Literal["read", "write"]
ScopeContext = Literal["system", "patient"]

# <system|patient>/<Type or *>.<read | write | * | cruds letters in order (SMART v2)>
_SCOPE_RE = re.compile(
    r"^(system|patient)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|(?=.)c?r?u?d?s?)$"
)
# SMART v1 (`read`, `write`, `*`) and v2 (`cruds` letters) scope actions.
_V1: dict[str, frozenset[Action]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"write"}),
    "*": frozenset({"read", "write"}),
}


@dataclass(frozen=True, slots=True)
class Scope:
    """A well-formed scope: ``system/Observation.rs`` is ("system", "Observation", {read})."""

    context: ScopeContext
    resource_type: str  # a FHIR resource type, or "*"
    actions: frozenset[Action]


def _scope_actions(action_part: str) -> frozenset[Action]:
    if action_part in _V1:
        return _V1[action_part]
    actions: set[Action] = set()
    if set(action_part) & set("rs"):
        actions.add("read")
    if set(action_part) & set("cud"):
        actions.add("write")
    return frozenset(actions)


@lru_cache(maxsize=512)
def parse_scope(text: str) -> Scope | None:
    """The scope ``text`` stands for, or None when it is not a scope of this server."""
    match = _SCOPE_RE.fullmatch(text)
    if match is None:
        return None
    context, resource_type, action_part = match.groups()
    return Scope(cast(ScopeContext, context), resource_type, _scope_actions(action_part))


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, as the access token says."""

    participant: str
    kind: str
    client_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    purpose: str | None = None
    organization_id: str | None = None
    token_id: str | None = None
    # The citizen portal acts for one citizen: the ``Patient/<id>`` its token was issued for.
    patient: str | None = None

    def allows(self, resource_type: str, action: Action) -> bool:
        """True when a granted scope covers ``action`` on ``resource_type``.

        ``system/`` scopes cover the type for the participant itself; ``patient/`` scopes only
        when the token names a patient (the citizen portal), and then only that patient's
        data — the consent engine's ``citizen-access`` rule, which the read and write paths
        apply, keeps the portal inside that compartment.
        """
        for text in self.scopes:
            scope = parse_scope(text)
            if scope is None:
                continue
            if scope.context == "patient" and self.patient is None:
                continue
            if scope.resource_type not in ("*", resource_type):
                continue
            if action in scope.actions:
                return True
        return False
