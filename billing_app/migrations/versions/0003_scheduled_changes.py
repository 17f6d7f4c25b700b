"""scheduled plan changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:50:09.623808
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_schedule_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('scheduled_period_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('scheduled_change_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('fk_orgsubscription_scheduled_period', 'planperiod', ['scheduled_period_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.drop_constraint('fk_orgsubscription_scheduled_period', type_='foreignkey')
        batch_op.drop_column('scheduled_change_at')
        batch_op.drop_column('scheduled_period_id')
        batch_op.drop_column('stripe_schedule_id')

