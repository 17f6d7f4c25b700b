"""webhook event indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:25:02.799932
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhookevent', schema=None) as batch_op:
        batch_op.create_index('ix_webhookevent_customer_state', ['customer_id', 'state'], unique=False)
        batch_op.create_index('ix_webhookevent_state_next_attempt', ['state', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('webhookevent', schema=None) as batch_op:
        batch_op.drop_index('ix_webhookevent_state_next_attempt')
        batch_op.drop_index('ix_webhookevent_customer_state')

