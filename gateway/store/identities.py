"""One Patient per citizen identifier: the ``patient_identities`` table follows each Patient.

A citizen is named by CPR or, without one, by a replacement CPR (eCPR). Every Patient write
claims the CPR-system identifiers its new version carries and releases the ones it dropped;
an identifier held by another Patient is a ``Conflict`` (409), and the table's primary key
refuses it too when two transactions race. Systems (docs/messaging.md, "for MedCom systems"):

- CPR ``urn:oid:1.2.208.176.1.2`` (DK Core ``dk-core-cpr-identifier``);
- X-eCPR ``urn:oid:1.2.208.176.1.6.1.1``, the national replacement-CPR register (DK Core
  ``dk-core-x-ecpr-identifier``; MedCom's examples use it);
- D-eCPR ``urn:oid:1.2.208.176.1.6.1.3`` and its regional sub-OIDs ``….3.<n>`` (DK Core
  ``dk-core-d-ecpr-codes``);
- ``https://sundhedsdatastyrelsen.dk/da/registre-og-services/ecpr`` (MedCom terminology
  ``medcom-core-ecpr-codes``, used by older MedCom messages).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import Conflict
from gateway.store.schema import patient_identities

CPR = "urn:oid:1.2.208.176.1.2"
X_ECPR = "urn:oid:1.2.208.176.1.6.1.1"
D_ECPR = "urn:oid:1.2.208.176.1.6.1.3"
MEDCOM_ECPR = "https://sundhedsdatastyrelsen.dk/da/registre-og-services/ecpr"
CPR_SYSTEMS = (CPR, X_ECPR, D_ECPR, MEDCOM_ECPR)
_SYSTEM_NAMES = {CPR: "CPR", X_ECPR: "X-eCPR", D_ECPR: "D-eCPR", MEDCOM_ECPR: "eCPR"}


class IdentityTaken(Conflict):
    """Another Patient holds one of the CPR-system identifiers of this one."""


def is_cpr_system(system: object) -> bool:
    return isinstance(system, str) and (system in CPR_SYSTEMS or system.startswith(D_ECPR + "."))


def system_name(system: str) -> str:
    return _SYSTEM_NAMES.get(system, "D-eCPR" if is_cpr_system(system) else system)


def cpr_identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(system, value) of the resource's CPR-system identifiers, in order, once each."""
    found: list[tuple[str, str]] = []
    for ident in resource.get("identifier") or []:
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if is_cpr_system(system) and isinstance(value, str) and value:
            pair = (str(system), value.strip())
            if pair not in found:
                found.append(pair)
    return found


def _any_of(pairs: list[tuple[str, str]]) -> Any:
    t = patient_identities
    return or_(*[and_(t.c.system == s, t.c.value == v) for s, v in pairs])


async def holders(
    conn: AsyncConnection, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(system, value) → the Patient id holding it, for those of ``pairs`` that are held."""
    if not pairs:
        return {}
    t = patient_identities
    rows = await conn.execute(select(t.c.system, t.c.value, t.c.patient_id).where(_any_of(pairs)))
    return {(r.system, r.value): r.patient_id for r in rows}


async def claim(conn: AsyncConnection, patient_id: str, resource: dict[str, Any]) -> None:
    """Make the table say: ``patient_id`` holds exactly the CPR-system ids ``resource`` has.

    The message names only the system, never the value (a CPR is personal data) nor the
    other Patient (the caller may not be allowed to know it).
    """
    wanted = cpr_identifiers(resource)
    held = await holders(conn, wanted)
    for pair, holder in held.items():
        if holder != patient_id:
            raise IdentityTaken(
                f"another Patient already holds this {system_name(pair[0])} identifier; the "
                "gateway never stores a second Patient with it (match the Patient by its "
                "identifier, or an operator merges duplicates: brobygger patients merge)",
                expression="Patient.identifier",
            )
    t = patient_identities
    current = await conn.execute(select(t.c.system, t.c.value).where(t.c.patient_id == patient_id))
    dropped = [(r.system, r.value) for r in current if (r.system, r.value) not in wanted]
    if dropped:
        await conn.execute(delete(t).where(t.c.patient_id == patient_id, _any_of(dropped)))
    new = [p for p in wanted if p not in held]
    if new:
        await conn.execute(
            insert(t), [{"system": s, "value": v, "patient_id": patient_id} for s, v in new]
        )


async def release(conn: AsyncConnection, patient_id: str) -> None:
    """A deleted Patient holds nothing."""
    t = patient_identities
    await conn.execute(delete(t).where(t.c.patient_id == patient_id))
