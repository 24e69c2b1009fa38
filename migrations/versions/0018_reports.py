"""reports: requested reports with their progress, lease and signed result (files stored
encrypted elsewhere), and each agency's Ed25519 key for report manifests

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28 22:51:14.303472+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - autogenerate references sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0018'
down_revision: str | Sequence[str] | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('report_signing_key',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('algorithm', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('sealed_private_key', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_report_signing_key_org_id_org')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_signing_key'))
    )
    with op.batch_alter_table('report_signing_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_signing_key_org_id'), ['org_id'], unique=False)
        batch_op.create_index('uq_report_signing_key_current', ['org_id'], unique=True, postgresql_where=sa.text('retired_at IS NULL'), sqlite_where=sa.text('retired_at IS NULL'))

    op.create_table('report',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('parameters', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.Uuid(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.Column('step', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('failure_code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('failure_detail', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claim_token', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pdf_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('bundle_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('sealed_keyset', sa.LargeBinary(), nullable=True),
    sa.Column('pdf_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('pdf_size', sa.BigInteger(), nullable=True),
    sa.Column('bundle_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('bundle_size', sa.BigInteger(), nullable=True),
    sa.Column('manifest', sa.Text(), nullable=True),
    sa.Column('manifest_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('signing_key_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint("kind != 'court_summary' OR client_id IS NOT NULL", name=op.f('ck_report_court_summary_has_client')),
    sa.CheckConstraint("kind IN ('court_summary')", name=op.f('ck_report_kind_known')),
    sa.CheckConstraint("status IN ('queued', 'building', 'done', 'failed', 'expired')", name=op.f('ck_report_status_known')),
    sa.CheckConstraint('percent >= 0 AND percent <= 100', name=op.f('ck_report_percent_range')),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_report_client_id_client')),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_report_org_id_org')),
    sa.ForeignKeyConstraint(['requested_by'], ['staff_user.id'], name=op.f('fk_report_requested_by_staff_user')),
    sa.ForeignKeyConstraint(['signing_key_id'], ['report_signing_key.id'], name=op.f('fk_report_signing_key_id_report_signing_key')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report'))
    )
    with op.batch_alter_table('report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_bundle_sha256'), ['bundle_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_report_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_report_manifest_sha256'), ['manifest_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_report_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_report_pdf_sha256'), ['pdf_sha256'], unique=False)
        batch_op.create_index('ix_report_status_expires_at', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_report_status_lease_expires_at', ['status', 'lease_expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('report', schema=None) as batch_op:
        batch_op.drop_index('ix_report_status_lease_expires_at')
        batch_op.drop_index('ix_report_status_expires_at')
        batch_op.drop_index(batch_op.f('ix_report_pdf_sha256'))
        batch_op.drop_index(batch_op.f('ix_report_org_id'))
        batch_op.drop_index(batch_op.f('ix_report_manifest_sha256'))
        batch_op.drop_index(batch_op.f('ix_report_client_id'))
        batch_op.drop_index(batch_op.f('ix_report_bundle_sha256'))

    op.drop_table('report')
    with op.batch_alter_table('report_signing_key', schema=None) as batch_op:
        batch_op.drop_index('uq_report_signing_key_current', postgresql_where=sa.text('retired_at IS NULL'), sqlite_where=sa.text('retired_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_report_signing_key_org_id'))

    op.drop_table('report_signing_key')
