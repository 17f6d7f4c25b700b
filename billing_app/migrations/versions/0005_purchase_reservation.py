"""purchase reservation: one open checkout per org

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 04:10:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'purchasereservation',
        sa.Column('org_id', sa.Integer(), nullable=False),
        sa.Column('claim_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('checkout_session_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('plan_period_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['plan_period_id'], ['planperiod.id']),
        sa.PrimaryKeyConstraint('org_id'),
    )


def downgrade() -> None:
    op.drop_table('purchasereservation')
