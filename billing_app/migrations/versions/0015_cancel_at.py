"""cancel_at: when Stripe ends a subscription set to cancel on a chosen date (or at the period end)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 22:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.drop_column('cancel_at')
