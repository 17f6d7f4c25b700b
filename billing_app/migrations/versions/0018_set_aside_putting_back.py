"""setasidechange.putting_back: a put-back begun, so a sync taking over a dead holder's row finishes it

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('setasidechange', schema=None) as batch_op:
        batch_op.add_column(sa.Column('putting_back', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('setasidechange', schema=None) as batch_op:
        batch_op.drop_column('putting_back')
