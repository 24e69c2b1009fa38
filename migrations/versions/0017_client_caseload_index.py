"""client: partial index in the caseload's order (org, urgent first, newest first, id) over
live clients, so a supervisor's page of the agency reads a page instead of sorting it

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 22:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | Sequence[str] | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text('purged_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.create_index(
            'ix_client_caseload',
            ['org_id', sa.text('urgent DESC'), sa.text('created_at DESC'), 'id'],
            unique=False, postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.drop_index('ix_client_caseload', postgresql_where=LIVE, sqlite_where=LIVE)
