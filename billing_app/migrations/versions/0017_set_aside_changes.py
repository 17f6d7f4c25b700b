"""setasidechange: a scheduled downgrade released for an upgrade awaiting 3-D Secure, put back if it lapses

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'setasidechange',
        sa.Column('subscription_id', sa.Integer(), nullable=False),
        sa.Column('price_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_items_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('end_behavior', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('claim_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['subscription_id'], ['orgsubscription.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('subscription_id'),
    )


def downgrade() -> None:
    op.drop_table('setasidechange')
