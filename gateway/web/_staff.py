"""Staff sign-in for the web view: users per participant, Argon2id hashes (argon2-cffi).

The seam for a municipality's own identity provider is :class:`IdentityProvider`: whatever
proves who a person is (this password check, or an OIDC login at the municipality's IdP)
yields a :class:`StaffIdentity` — the participant the person works for and a name — and the
web view needs nothing else. See docs/web.md, "Signing in with the municipality's own IdP".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.errors import BadRequest, Conflict
from gateway.store.database import Database
from gateway.store.schema import staff_users

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106 low-memory profile
# Verified when the user is unknown, so that an unknown name costs as long as a wrong password.
_DUMMY = _HASHER.hash("not a password of anyone")


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    participant: str
    username: str
    display: str


class IdentityProvider(Protocol):
    """Proves who a person is; returns None when it cannot (never says why to the browser)."""

    async def authenticate(
        self, participant: str, username: str, password: str
    ) -> StaffIdentity | None: ...


class StaffDirectory:
    """The password-based :class:`IdentityProvider`: users held per participant."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, participant: str, username: str, display: str, password: str) -> None:
        if not _USERNAME.fullmatch(username):
            raise BadRequest("a username is 2-64 of a-z 0-9 . _ -", expression="username")
        if len(password) < MIN_PASSWORD:
            raise BadRequest(
                f"a password has at least {MIN_PASSWORD} characters", expression="password"
            )
        now = datetime.now(UTC).replace(tzinfo=None)
        row = {
            "participant": participant,
            "username": username,
            "display": display[:255],
            "password_hash": _HASHER.hash(password),
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.database.engine.begin() as conn:
                await conn.execute(staff_users.insert().values(**row))
        except IntegrityError:
            raise Conflict(f"{participant} already has a user {username!r}") from None

    async def exists(self, participant: str, username: str) -> bool:
        async with self.database.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(staff_users.c.username).where(
                        staff_users.c.participant == participant,
                        staff_users.c.username == username,
                    )
                )
            ).first()
        return row is not None

    async def authenticate(
        self, participant: str, username: str, password: str
    ) -> StaffIdentity | None:
        async with self.database.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(staff_users).where(
                        staff_users.c.participant == participant[:64],
                        staff_users.c.username == username[:64],
                    )
                )
            ).first()
        try:
            _HASHER.verify(row.password_hash if row is not None else _DUMMY, password[:1024])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        return StaffIdentity(row.participant, row.username, row.display)


# Demo users for ``make run`` (refused in production with the rest of the demo): the job
# centre's caseworker and the rehab unit's therapist. Documented in docs/web.md.
DEMO_STAFF: tuple[tuple[str, str, str, str], ...] = (
    ("jobcenter-aarhus", "sagsbehandler", "Sagsbehandler, Jobcenter Aarhus", "demo-jobcenter-1"),
    ("aarhus-genoptraening", "terapeut", "Fysioterapeut, Genoptræning Aarhus", "demo-terapeut-1"),
)


async def ensure_demo_staff(database: Database) -> None:
    directory = StaffDirectory(database)
    for participant, username, display, password in DEMO_STAFF:
        if not await directory.exists(participant, username):
            try:
                await directory.add(participant, username, display, password)
            except Conflict:  # another gateway process added it just now
                pass
