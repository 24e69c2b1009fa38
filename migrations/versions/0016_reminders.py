"""reminders: reminders with their delivery rows (one per reminder, round and channel),
per-org reminder rules, per-user email preferences (quiet hours, daily digest)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 19:56:21.827523+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - autogenerate references sqlmodel.sql.sqltypes
from alembic import op


revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notification_preference',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('email_enabled', sa.Boolean(), nullable=False),
    sa.Column('time_zone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('quiet_start', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
    sa.Column('quiet_end', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
    sa.Column('daily_digest', sa.Boolean(), nullable=False),
    sa.Column('digest_time', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_notification_preference_org_id_org')),
    sa.ForeignKeyConstraint(['user_id'], ['staff_user.id'], name=op.f('fk_notification_preference_user_id_staff_user')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_notification_preference'))
    )
    with op.batch_alter_table('notification_preference', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_preference_org_id'), ['org_id'], unique=False)

    op.create_table('reminder_settings',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.Uuid(), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_reminder_settings_org_id_org')),
    sa.ForeignKeyConstraint(['updated_by'], ['staff_user.id'], name=op.f('fk_reminder_settings_updated_by_staff_user')),
    sa.PrimaryKeyConstraint('org_id', name=op.f('pk_reminder_settings'))
    )
    op.create_table('reminder',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=True),
    sa.Column('assignee_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('audience', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('source_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('source_id', sa.Uuid(), nullable=True),
    sa.Column('rule_key', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=True),
    sa.Column('local_time', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
    sa.Column('time_zone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('repeat_daily', sa.Boolean(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('held_reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('claim_token', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("audience IN ('staff', 'client')", name=op.f('ck_reminder_audience_known')),
    sa.ForeignKeyConstraint(['assignee_id'], ['staff_user.id'], name=op.f('fk_reminder_assignee_id_staff_user')),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_reminder_client_id_client')),
    sa.ForeignKeyConstraint(['created_by'], ['staff_user.id'], name=op.f('fk_reminder_created_by_staff_user')),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_reminder_org_id_org')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminder')),
    sa.UniqueConstraint('source_kind', 'source_id', 'rule_key', name='uq_reminder_source_rule')
    )
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reminder_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reminder_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reminder_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_reminder_org_id_due_at', ['org_id', 'due_at'], unique=False)
        batch_op.create_index('ix_reminder_state_due_at', ['state', 'due_at'], unique=False)

    op.create_table('reminder_delivery',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('reminder_id', sa.Uuid(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('recipient_id', sa.Uuid(), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['org.id'], name=op.f('fk_reminder_delivery_org_id_org')),
    sa.ForeignKeyConstraint(['recipient_id'], ['staff_user.id'], name=op.f('fk_reminder_delivery_recipient_id_staff_user')),
    sa.ForeignKeyConstraint(['reminder_id'], ['reminder.id'], name=op.f('fk_reminder_delivery_reminder_id_reminder')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminder_delivery')),
    sa.UniqueConstraint('reminder_id', 'round', 'channel', name='uq_reminder_delivery_reminder_round_channel')
    )
    with op.batch_alter_table('reminder_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reminder_delivery_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reminder_delivery_reminder_id'), ['reminder_id'], unique=False)
        batch_op.create_index('ix_reminder_delivery_state_not_before', ['state', 'not_before'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reminder_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_reminder_delivery_state_not_before')
        batch_op.drop_index(batch_op.f('ix_reminder_delivery_reminder_id'))
        batch_op.drop_index(batch_op.f('ix_reminder_delivery_org_id'))

    op.drop_table('reminder_delivery')
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_index('ix_reminder_state_due_at')
        batch_op.drop_index('ix_reminder_org_id_due_at')
        batch_op.drop_index(batch_op.f('ix_reminder_org_id'))
        batch_op.drop_index(batch_op.f('ix_reminder_client_id'))
        batch_op.drop_index(batch_op.f('ix_reminder_assignee_id'))

    op.drop_table('reminder')
    op.drop_table('reminder_settings')
    with op.batch_alter_table('notification_preference', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_preference_org_id'))

    op.drop_table('notification_preference')
