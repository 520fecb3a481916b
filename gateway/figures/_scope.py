"""Whose figures a participant may see: its own organisation, or its whole municipality.

The municipality is modelled from the participant directory: every participant carries its
DK municipality code as an identifier (``dk-core-municipality-codes``); a municipality's
figures are those of its job centre(s) and rehabilitation unit(s) — the participants of kind
``jobcentre`` or ``rehab-unit`` with that code. A participant that carries the code (a job
centre or rehab unit of the municipality) may ask for them, as
``subject=Organization?identifier=<system>|<code>`` (a FHIR conditional reference to the
municipality, which has no Organization of its own in the store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import Forbidden
from gateway.participants.directory import Participant, organization_id_for
from gateway.participants.identifiers import MUNICIPALITY

MUNICIPAL_KINDS = frozenset({"jobcentre", "rehab-unit"})


@dataclass(frozen=True, slots=True)
class Scope:
    """The organisations a report covers: ``members`` holds each one's references."""

    label: str
    reporter: dict[str, Any]
    members: tuple[frozenset[str], ...]
    municipality: str | None = None


def _org(participant: Participant) -> str:
    return f"Organization/{participant.organization_id or organization_id_for(participant.name)}"


def municipality_subject(code: str) -> str:
    return f"Organization?identifier={MUNICIPALITY}|{code}"


def resolve_scope(
    caller: Participant, subject: str | None, directory: Sequence[Participant]
) -> Scope:
    """The caller's own organisation (no subject, or its own), or its municipality."""
    own = _org(caller)
    if subject in (None, "", own):
        return Scope(caller.display, {"reference": own}, (frozenset({own}),))
    code = caller.identifier(MUNICIPALITY)
    if (
        code is not None
        and caller.kind in MUNICIPAL_KINDS
        and subject in (municipality_subject(code), f"Organization?identifier={code}")
    ):
        members = [
            p for p in directory if p.kind in MUNICIPAL_KINDS and p.identifier(MUNICIPALITY) == code
        ]
        return Scope(
            f"Kommune {code}",
            {
                "type": "Organization",
                "identifier": {"system": MUNICIPALITY, "value": code},
                "display": f"Kommune {code} (jobcenter og genoptræning)",
            },
            tuple(frozenset({_org(p)}) for p in members),
            municipality=code,
        )
    raise Forbidden(
        "a participant sees key figures for its own organisation or, as a job centre or "
        "rehabilitation unit, for its municipality",
        expression="subject",
    )
