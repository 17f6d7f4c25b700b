"""teams: invitations, seat claims, per-seat plans (quantity), boolean plan features

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0009'
# Follows the operator console's 0008 (on main since this branch was rebased).
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'invitation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('org_id', sa.Integer(), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('invited_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('accepted_by_id', sa.Integer(), nullable=True),
        sa.Column('declined_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['invited_by_id'], ['user.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['accepted_by_id'], ['user.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitation_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitation_token_hash'), ['token_hash'], unique=True)
        batch_op.create_index('ix_invitation_org_email', ['org_id', 'email'], unique=False)

    op.create_table(
        'seatclaim',
        sa.Column('org_id', sa.Integer(), nullable=False),
        sa.Column('claim_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('org_id'),
    )

    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feature_flags_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('per_seat', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('min_seats', sa.Integer(), nullable=False, server_default='1'))

    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quantity', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.drop_column('quantity')
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.drop_column('min_seats')
        batch_op.drop_column('per_seat')
        batch_op.drop_column('feature_flags_json')
    op.drop_table('seatclaim')
    op.drop_table('invitation')
