"""The append-only audit trail table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("recorded", sa.DateTime(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("participant", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=2), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_events_patient_id_recorded"), ["patient_id", "recorded"]
        )
        batch_op.create_index(batch_op.f("ix_audit_events_recorded"), ["recorded"])


def downgrade() -> None:
    op.drop_table("audit_events")
