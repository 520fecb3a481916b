"""Who is calling: the authenticated participant, its granted scopes and purpose of use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["read", "write"]

# SMART v1 (`read`, `write`, `*`) and v2 (`cruds` letters) scope actions.
_V1 = {"read": {"read"}, "write": {"write"}, "*": {"read", "write"}}


def _scope_actions(action_part: str) -> set[str]:
    if action_part in _V1:
        return _V1[action_part]
    actions: set[str] = set()
    if action_part and set(action_part) <= set("cruds"):
        if set(action_part) & set("rs"):
            actions.add("read")
        if set(action_part) & set("cud"):
            actions.add("write")
    return actions


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
        """True when a granted ``system/<Type|*>.<action>`` scope covers the request."""
        for scope in self.scopes:
            context, _, rest = scope.partition("/")
            if context != "system" or "." not in rest:
                continue
            scope_type, _, action_part = rest.partition(".")
            if scope_type not in ("*", resource_type):
                continue
            if action in _scope_actions(action_part):
                return True
        return False
