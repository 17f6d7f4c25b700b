"""retiredprice: a plan period's former Stripe prices, so subscribers left on one keep their plan

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 10:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'retiredprice',
        sa.Column('stripe_price_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('plan_period_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['plan_period_id'], ['planperiod.id']),
        sa.PrimaryKeyConstraint('stripe_price_id'),
    )
    with op.batch_alter_table('retiredprice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retiredprice_plan_period_id'), ['plan_period_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('retiredprice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retiredprice_plan_period_id'))
    op.drop_table('retiredprice')
