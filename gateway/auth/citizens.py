"""The citizen portal's citizen: which Patient a portal token is for, and who says so.

The portal logs its citizen in (MitID) and vouches for them to the gateway under its own key:
its signed client assertion carries the citizen's CPR number in the ``cpr`` claim. The gateway
resolves the number to the Patient records carrying it (identifier system
``urn:oid:1.2.208.176.1.2``) and issues a token for exactly one of them. A ``patient`` form
parameter may pick one of those records (when there are several), never another citizen's:
the portal cannot name a Patient id it has no signed word for. No other client's assertion may
carry ``cpr``, and only the portal's tokens carry a patient.

Server side: :func:`resolve_patient` (the token endpoint). Operator side (the ``brobygger
token`` CLI and the tests, acting as the demo portal): :func:`cpr_of_patient` looks up the CPR
number a Patient carries, to sign it into the portal's assertion.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final

from sqlalchemy import and_, false, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.auth.assertions import CPR_CLAIM, InvalidRequest, TemporarilyUnavailable
from gateway.errors import GatewayError, NotFound
from gateway.store.database import Database
from gateway.store.schema import idx_token, resources

CPR_SYSTEM: Final = "urn:oid:1.2.208.176.1.2"
_CPR_RE: Final = re.compile(r"^[0-9]{10}$")
_PATIENT_RE: Final = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})$")
# More records than this for one CPR number is a directory problem, not a choice to offer.
_MAX_RECORDS: Final = 20


def citizen_cpr(claims: dict[str, Any], *, citizen_bound: bool) -> str | None:
    """The CPR number the assertion vouches for (portal), None for other clients.

    Raises InvalidRequest when the portal's assertion has no valid ``cpr`` claim or another
    client's assertion has one.
    """
    value = claims.get(CPR_CLAIM)
    if not citizen_bound:
        if value is not None:
            raise InvalidRequest(
                f"only the citizen portal's client assertion may carry a '{CPR_CLAIM}' claim"
            )
        return None
    if value is None:
        raise InvalidRequest(
            "the citizen portal's client assertion must carry the logged-in citizen's CPR "
            f"number in the '{CPR_CLAIM}' claim"
        )
    if not isinstance(value, str) or not _CPR_RE.fullmatch(value):
        raise InvalidRequest(f"the '{CPR_CLAIM}' claim must be a CPR number of 10 digits")
    return value


def patient_reference(value: str | None) -> str | None:
    """A ``patient`` form parameter, checked to be ``Patient/<id>``; None when absent."""
    if value is None or value == "":
        return None
    if not _PATIENT_RE.fullmatch(value):
        raise InvalidRequest("patient must be a reference Patient/<id>")
    return value


async def patients_with_cpr(database: Database, cpr: str) -> list[str]:
    """``Patient/<id>`` of every current (not deleted) Patient carrying the CPR number."""
    query = (
        select(idx_token.c.id)
        .join(
            resources,
            and_(resources.c.type == idx_token.c.type, resources.c.id == idx_token.c.id),
        )
        .where(
            idx_token.c.type == "Patient",
            idx_token.c.param == "identifier",
            idx_token.c.system == CPR_SYSTEM,
            idx_token.c.code == cpr,
            resources.c.deleted == false(),
        )
        .distinct()
        .order_by(idx_token.c.id)
        .limit(_MAX_RECORDS + 1)
    )
    try:
        async with database.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    except (DBAPIError, PoolTimeout) as exc:
        raise TemporarilyUnavailable("the token service cannot reach its database") from exc
    return [f"Patient/{row.id}" for row in rows]


async def resolve_patient(database: Database, cpr: str, requested: str | None) -> str:
    """The Patient a portal token is for: the citizen's record, or the one of them requested.

    Raises InvalidRequest when no record carries the number, when ``requested`` is not one of
    the citizen's records, or when there are several and none was picked.
    """
    records = await patients_with_cpr(database, cpr)
    if requested is not None:
        if requested not in records:
            raise InvalidRequest(
                "patient is not a record of the citizen the client assertion vouches for"
            )
        return requested
    if not records:
        raise InvalidRequest("no Patient record carries the citizen's CPR number")
    if len(records) > _MAX_RECORDS:
        raise InvalidRequest("too many Patient records carry the citizen's CPR number")
    if len(records) > 1:
        raise InvalidRequest(
            "several Patient records carry the citizen's CPR number; "
            "name one with patient=Patient/<id>"
        )
    return records[0]


# --- operator side --------------------------------------------------------------------------


async def cpr_of_patient(database: Database, patient: str) -> str:
    """The CPR number a stored Patient carries (operator tools acting as the demo portal).

    Raises NotFound when the reference is malformed, the Patient does not exist (or was
    deleted) or carries no CPR identifier.
    """
    match = _PATIENT_RE.fullmatch(patient)
    if match is None:
        raise NotFound(f"{patient!r} is not a reference Patient/<id>")
    query = select(resources.c.content).where(
        resources.c.type == "Patient",
        resources.c.id == match.group(1),
        resources.c.deleted == false(),
    )
    async with database.engine.connect() as conn:
        content = (await conn.execute(query)).scalar_one_or_none()
    if content is None:
        raise NotFound(f"{patient} is not known")
    for identifier in json.loads(content).get("identifier") or []:
        value = identifier.get("value") if isinstance(identifier, dict) else None
        if identifier.get("system") == CPR_SYSTEM and isinstance(value, str):
            if _CPR_RE.fullmatch(value):
                return value
    raise NotFound(f"{patient} carries no CPR number ({CPR_SYSTEM})")


def lookup_cpr(database_url: str, patient: str) -> str:
    """:func:`cpr_of_patient` from synchronous code (the CLI): opens and closes the database."""

    async def run() -> str:
        database = Database(database_url)
        try:
            return await cpr_of_patient(database, patient)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except GatewayError:
        raise
    except Exception as exc:  # the operator sees one line, not a driver traceback
        raise NotFound(f"cannot read {patient} from the database ({type(exc).__name__})") from exc
