"""Tables of the store (SQLAlchemy Core). Migrations in ``migrations/`` must match this file.

Resources are versioned: ``resource_history`` keeps every version (a delete is a tombstone
version), ``resources`` holds the current one. The ``idx_*`` tables index the current version
of each resource and are written in the same transaction as the resource.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TYPE = 64
ID = 64

resources = Table(
    "resources",
    metadata,
    Column("type", String(TYPE), primary_key=True),
    Column("id", String(ID), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    Index(None, "type", "last_updated"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("type", String(TYPE), primary_key=True),
    Column("id", String(ID), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),
    Column("content", Text, nullable=True),
    Index(None, "type", "last_updated"),
    Index(None, "last_updated"),
)

idx_token = Table(
    "idx_token",
    metadata,
    Column("type", String(TYPE), nullable=False),
    Column("id", String(ID), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=True),
    Index(None, "type", "param", "code"),
    Index(None, "type", "id"),
)

idx_string = Table(
    "idx_string",
    metadata,
    Column("type", String(TYPE), nullable=False),
    Column("id", String(ID), nullable=False),
    Column("param", String(64), nullable=False),
    # ``norm`` is lower-cased with accents folded (default search); ``exact`` is as written.
    Column("norm", String(255), nullable=False),
    Column("exact", String(255), nullable=False),
    Index(None, "type", "param", "norm"),
    Index(None, "type", "id"),
)

idx_date = Table(
    "idx_date",
    metadata,
    Column("type", String(TYPE), nullable=False),
    Column("id", String(ID), nullable=False),
    Column("param", String(64), nullable=False),
    # The instant range a date value covers: 1980-01 is [1980-01-01T00:00, 1980-02-01T00:00).
    Column("low", DateTime, nullable=False),
    Column("high", DateTime, nullable=False),
    Index(None, "type", "param", "low"),
    Index(None, "type", "id"),
)

idx_reference = Table(
    "idx_reference",
    metadata,
    Column("type", String(TYPE), nullable=False),
    Column("id", String(ID), nullable=False),
    Column("param", String(64), nullable=False),
    Column("target_type", String(TYPE), nullable=False),
    Column("target_id", String(255), nullable=False),
    Index(None, "type", "param", "target_type", "target_id"),
    Index(None, "target_type", "target_id"),
    Index(None, "type", "id"),
)

INDEX_TABLES = (idx_token, idx_string, idx_date, idx_reference)

participants = Table(
    "participants",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("display", String(255), nullable=False),
    # JSON list of FHIR Identifiers ({"system", "value"}).
    Column("identifiers", Text, nullable=False),
    # The participant's Organization resource id in the FHIR store.
    Column("organization_id", String(ID), nullable=True),
    # Public JWKS (JSON); private keys never enter the database.
    Column("jwks", Text, nullable=False),
    Column("endpoint", String(1024), nullable=True),
    Column("mailbox", Boolean, nullable=False, default=True),
    # How its messages reach $process-message: "jose" (a JWE holding a JWS, the default) or
    # "plain" (a FHIR message Bundle as application/fhir+json or +xml over its authenticated
    # TLS connection, as MedCom systems send them).
    Column("transport", String(16), nullable=False, default="jose", server_default="jose"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# Client-assertion ids already used (replay protection across all gateway processes).
used_assertions = Table(
    "used_assertions",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires_at", DateTime, nullable=False),
    Index(None, "expires_at"),
)

# The audit trail (FHIR AuditEvents), append-only: one row per event, never updated or
# deleted, outside the versioned resource tables so that recording a disclosure costs one
# insert. ``patient_id`` is the patient the event is about (the citizen reads by it).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("recorded", DateTime, nullable=False),
    Column("patient_id", String(ID), nullable=True),
    Column("participant", String(64), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("content", Text, nullable=False),
    Index(None, "patient_id", "recorded"),
    Index(None, "recorded"),
)

# Secure messaging (gateway/messaging). One row per message the gateway accepted, keyed by
# its own ``key``; (sender, message_id) is the idempotency key of MedCom's MessageHeader.id.
# ``bundle`` is the message as received (after decryption), ``signed`` the sender's compact
# JWS over it (kept for non-repudiation), ``ack`` the Acknowledgement Bundle the gateway
# returned. ``reply_to`` is the key of the message an acknowledgement answers.
messages = Table(
    "messages",
    metadata,
    Column("key", String(ID), primary_key=True),
    Column("sender", String(64), nullable=False),
    Column("message_id", String(ID), nullable=False),
    Column("event", String(64), nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("bundle", Text, nullable=False),
    Column("signed", Text, nullable=False),
    Column("ack_code", String(16), nullable=False),
    Column("ack", Text, nullable=False),
    # JSON list of "Type/id" the message stored (its derived resources).
    Column("resources", Text, nullable=False),
    Column("reply_to", String(ID), nullable=True),
    # JSON {fullUrl in the message: "Type/id" stored}: which stored resource each entry became
    # (a forwarded copy carries each resource once, in its stored form).
    Column("origins", Text, nullable=True),
    Index(None, "sender", "message_id", unique=True),
    Index(None, "received_at"),
)

# Store-and-forward: one row per (message, receiver). ``status`` is pending → delivered →
# acknowledged, or failed after the retry limit (or when consent withholds the copy). A
# worker leases due rows (``lease_owner``/``lease_until``) so that several gateway processes
# never deliver the same row at the same time; a crashed worker's lease simply runs out.
deliveries = Table(
    "deliveries",
    metadata,
    Column("message_key", String(ID), primary_key=True),
    Column("receiver", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", DateTime, nullable=False),
    # The receiver's Acknowledgement (JSON), once it has answered.
    Column("ack_code", String(16), nullable=True),
    Column("ack", Text, nullable=True),
    Index(None, "status", "next_attempt_at"),
    Index(None, "receiver", "status"),
)

# The identity of a citizen: every CPR-system identifier (CPR, the replacement CPRs) belongs to
# at most one Patient. The primary key makes that a rule of the database, not only of the
# code: a second Patient with an identifier another one holds cannot be written, by any path.
# Rows follow the Patient's current version (gateway/store/identities.py).
patient_identities = Table(
    "patient_identities",
    metadata,
    Column("system", String(255), primary_key=True),
    Column("value", String(255), primary_key=True),
    Column("patient_id", String(ID), nullable=False),
    Index(None, "patient_id"),
)

# The web view's staff sign-in (gateway/web): one row per person of a participant. Only an
# Argon2id hash of the password is kept (argon2-cffi); a municipality with its own identity
# provider (OIDC) needs no rows here.
staff_users = Table(
    "staff_users",
    metadata,
    Column("participant", String(64), primary_key=True),
    Column("username", String(64), primary_key=True),
    Column("display", String(255), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
