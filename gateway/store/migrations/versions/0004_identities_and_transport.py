"""Citizen identities (one Patient per CPR-system identifier), message origins, transports.

Revision ID: 0004
Revises: 0003

Existing Patients are entered into ``patient_identities`` in id order; an identifier that two
Patients already share stays with the first, and ``brobygger patients duplicates`` lists
both (``brobygger patients merge`` makes them one).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of gateway/store/identities.py's systems at this revision.
_CPR_SYSTEMS = (
    "urn:oid:1.2.208.176.1.2",
    "urn:oid:1.2.208.176.1.6.1.1",
    "urn:oid:1.2.208.176.1.6.1.3",
    "https://sundhedsdatastyrelsen.dk/da/registre-og-services/ecpr",
)


def _is_cpr_system(system: object) -> bool:
    return isinstance(system, str) and (
        system in _CPR_SYSTEMS or system.startswith("urn:oid:1.2.208.176.1.6.1.3.")
    )


def upgrade() -> None:
    op.create_table(
        "patient_identities",
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("system", "value", name=op.f("pk_patient_identities")),
    )
    with op.batch_alter_table("patient_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patient_identities_patient_id"), ["patient_id"])
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origins", sa.Text(), nullable=True))
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("transport", sa.String(length=16), nullable=False, server_default="jose")
        )
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, content FROM resources WHERE type = 'Patient' AND deleted = :no ORDER BY id"
        ),
        {"no": False},
    )
    taken: set[tuple[str, str]] = set()
    values = []
    for row in rows:
        for ident in json.loads(row.content).get("identifier") or []:
            system, value = ident.get("system"), ident.get("value")
            if not _is_cpr_system(system) or not isinstance(value, str):
                continue
            if (system, value) in taken:
                continue
            taken.add((system, value))
            values.append({"system": system, "value": value, "patient_id": row.id})
    if values:
        connection.execute(
            sa.text(
                "INSERT INTO patient_identities (system, value, patient_id) "
                "VALUES (:system, :value, :patient_id)"
            ),
            values,
        )


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.drop_column("transport")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("origins")
    op.drop_table("patient_identities")
