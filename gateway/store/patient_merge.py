"""Duplicate citizens: find the Patients that share a CPR-system identifier, merge two.

Duplicates exist only from before ``patient_identities`` (migration 0004): since then the
database refuses them. A merge is the operator's, in one transaction, and keeps everything:

- the duplicate gets a last version without its CPR-system identifiers, ``active: false``
  and ``link`` ``replaced-by`` the kept Patient (its history stays readable);
- the kept Patient gets a new version holding both sets of identifiers and ``link``
  ``replaces`` the duplicate;
- every resource that referred to the duplicate gets a new version referring to the kept one;
- one AuditEvent (subtype ``merge``) names both Patients and the operator.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import false, select

from gateway.errors import BadRequest, NotFound
from gateway.search.dates import format_instant, utc_now
from gateway.store import audit_log
from gateway.store.identities import cpr_identifiers, system_name
from gateway.store.repository import Store, new_id
from gateway.store.schema import idx_reference, resources

_LINK_TYPE = "http://hl7.org/fhir/link-type"


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Patients sharing one CPR-system identifier (the value masked for display)."""

    system: str
    masked: str
    patient_ids: list[str]


def mask(value: str) -> str:
    """``250947-****``: enough for an operator to tell citizens apart, not the number."""
    return f"{value[:6]}-****" if len(value) >= 6 else "****"


async def duplicates(store: Store) -> list[Duplicate]:
    """Every CPR-system identifier that more than one current Patient carries."""
    held: dict[tuple[str, str], list[str]] = {}
    async with store.read_connection() as conn:
        rows = await conn.execute(
            select(resources.c.id, resources.c.content)
            .where(resources.c.type == "Patient", resources.c.deleted == false())
            .order_by(resources.c.id)
        )
        for row in rows:
            for pair in cpr_identifiers(json.loads(row.content)):
                held.setdefault(pair, []).append(row.id)
    return [
        Duplicate(system_name(system), mask(value), ids)
        for (system, value), ids in sorted(held.items())
        if len(ids) > 1
    ]


def _repoint(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        out = {k: _repoint(v, old, new) for k, v in node.items()}
        if out.get("reference") == old:
            out["reference"] = new
        return out
    if isinstance(node, list):
        return [_repoint(v, old, new) for v in node]
    return node


def _without_cpr(patient: dict[str, Any]) -> list[dict[str, Any]]:
    pairs = set(cpr_identifiers(patient))
    return [
        i
        for i in patient.get("identifier") or []
        if (i.get("system"), str(i.get("value", "")).strip()) not in pairs
    ]


async def merge(store: Store, keep: str, duplicate: str, *, operator: str) -> dict[str, Any]:
    """Merge Patient ``duplicate`` into ``keep`` (see the module doc); what changed."""
    if keep == duplicate:
        raise BadRequest("a Patient cannot be merged into itself")
    async with store.write("patient merge") as writer:
        current: dict[str, dict[str, Any]] = {}
        for rid in (keep, duplicate):
            row = await writer.current("Patient", rid)
            if row is None or row.deleted:
                raise NotFound(f"Patient/{rid} is not known")
            current[rid] = json.loads(row.content)
        kept, gone = current[keep], current[duplicate]
        retired = copy.deepcopy(gone)
        retired["identifier"] = _without_cpr(gone)
        if not retired["identifier"]:
            del retired["identifier"]
        retired["active"] = False
        retired["link"] = [
            *[link for link in gone.get("link", []) if link.get("type") != "replaced-by"],
            {"other": {"reference": f"Patient/{keep}"}, "type": "replaced-by"},
        ]
        await writer.put(retired)
        merged = copy.deepcopy(kept)
        identifiers = list(kept.get("identifier") or [])
        for ident in gone.get("identifier") or []:
            if all(
                (i.get("system"), i.get("value")) != (ident.get("system"), ident.get("value"))
                for i in identifiers
            ):
                identifiers.append(ident)
        merged["identifier"] = identifiers
        merged["link"] = [
            *kept.get("link", []),
            {"other": {"reference": f"Patient/{duplicate}"}, "type": "replaces"},
        ]
        await writer.put(merged)
        referring = await writer.conn.execute(
            select(idx_reference.c.type, idx_reference.c.id)
            .where(
                idx_reference.c.target_type == "Patient",
                idx_reference.c.target_id == duplicate,
            )
            .distinct()
        )
        moved: list[str] = []
        for rtype, rid in [(r.type, r.id) for r in referring]:
            if (rtype, rid) == ("Patient", keep):
                continue
            row = await writer.current(rtype, rid)
            if row is None or row.deleted:
                continue
            resource = json.loads(row.content)
            if rtype == "Patient" and rid == duplicate:
                continue
            await writer.put(
                _repoint(resource, f"Patient/{duplicate}", f"Patient/{keep}"), current=row
            )
            moved.append(f"{rtype}/{rid}")
        event = _merge_event(keep, duplicate, operator, len(moved))
        await audit_log.append(writer.conn, [event])
    return {"kept": f"Patient/{keep}", "retired": f"Patient/{duplicate}", "repointed": moved}


def _merge_event(keep: str, duplicate: str, operator: str, moved: int) -> dict[str, Any]:
    entity_type = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
    role = "http://terminology.hl7.org/CodeSystem/object-role"
    return {
        "resourceType": "AuditEvent",
        "id": new_id(),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {"system": "http://brobygger.dk/fhir/CodeSystem/audit-subtype", "code": "merge"}
        ],
        "action": "U",
        "recorded": format_instant(utc_now()),
        "outcome": "0",
        "outcomeDesc": (
            f"Patient/{duplicate} merged into Patient/{keep}; {moved} resources repointed"
        ),
        "agent": [{"who": {"display": operator}, "requestor": True}],
        "source": {"observer": {"display": "Brobygger gateway"}},
        "entity": [
            {
                "what": {"reference": f"Patient/{keep}"},
                "type": {"system": entity_type, "code": "1"},
                "role": {"system": role, "code": "1"},
            },
            {
                "what": {"reference": f"Patient/{duplicate}"},
                "type": {"system": entity_type, "code": "1"},
                "role": {"system": role, "code": "1"},
            },
        ],
    }
