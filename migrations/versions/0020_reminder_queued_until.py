"""reminder, reminder_delivery: queued_until — a sweep enqueues a reminder or an email again
only once the message it sent before has expired (or was consumed by a claim)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-29 01:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0020'
down_revision: str | Sequence[str] | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('reminder', 'reminder_delivery'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('queued_until', sa.DateTime(timezone=True),
                                          nullable=True))


def downgrade() -> None:
    for table in ('reminder', 'reminder_delivery'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('queued_until')
