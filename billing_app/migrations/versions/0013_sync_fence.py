"""sync_fence: when the Stripe reads behind each customer's mirror began, and each staged page's

A sync that read Stripe before a newer sync of the same customer committed no longer writes over
it (billing/sync.py, fence). Staged bulk-reconcile objects carry their page's read time; a run
interrupted before this migration is abandoned by it (its staged rows have no read time).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 20:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('billingcustomer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('synced_read_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("DELETE FROM reconcilestage")
    op.execute("UPDATE reconcilerun SET state = 'abandoned' WHERE state IN ('running', 'failed')")
    with op.batch_alter_table('reconcilestage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('read_at', sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('reconcilestage', schema=None) as batch_op:
        batch_op.drop_column('read_at')
    with op.batch_alter_table('billingcustomer', schema=None) as batch_op:
        batch_op.drop_column('synced_read_at')
