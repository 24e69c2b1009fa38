"""evidence_preview: where the sealed preview of an image is kept, once a worker has made
it (app.evidence.previews); a table of its own, as the evidence row is append-only

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-29 10:20:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - autogenerate references sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0022'
down_revision: str | Sequence[str] | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('evidence_preview',
    sa.Column('evidence_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('storage_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('made_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['evidence_id'], ['evidence.id'],
                            name=op.f('fk_evidence_preview_evidence_id_evidence')),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_evidence_preview_org_id_org')),
    sa.PrimaryKeyConstraint('evidence_id', name=op.f('pk_evidence_preview')),
    sa.UniqueConstraint('storage_key', name=op.f('uq_evidence_preview_storage_key'))
    )
    with op.batch_alter_table('evidence_preview', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_preview_org_id'), ['org_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('evidence_preview', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_preview_org_id'))
    op.drop_table('evidence_preview')
