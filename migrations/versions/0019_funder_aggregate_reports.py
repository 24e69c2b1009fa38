"""reports: a second kind, funder_aggregate (de-identified counts of an agency, no client)

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28 23:20:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0019'
down_revision: str | Sequence[str] | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('report', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_report_kind_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_report_kind_known'), "kind IN ('court_summary', 'funder_aggregate')")


def downgrade() -> None:
    op.execute("DELETE FROM report WHERE kind = 'funder_aggregate'")
    with op.batch_alter_table('report', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_report_kind_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_report_kind_known'), "kind IN ('court_summary')")
