"""security: login throttle keys with growing delays, known devices, session details,
token expiry, password resets, orphan Stripe customers, the deployment id

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Throttle rows are short-lived counters: the old per-email table is replaced, not converted.
    with op.batch_alter_table('loginthrottle', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loginthrottle_email'))
    op.drop_table('loginthrottle')
    op.create_table(
        'loginthrottle',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('next_allowed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('loginthrottle', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loginthrottle_key'), ['key'], unique=True)
        batch_op.create_index(batch_op.f('ix_loginthrottle_updated_at'), ['updated_at'], unique=False)

    op.create_table(
        'knowndevice',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('device_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('device_hash', 'user_id', name='uq_knowndevice_device_user'),
    )
    with op.batch_alter_table('knowndevice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_knowndevice_device_hash'), ['device_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_knowndevice_user_id'), ['user_id'], unique=False)

    op.create_table(
        'passwordreset',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('passwordreset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_passwordreset_token_hash'), ['token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_passwordreset_user_id'), ['user_id'], unique=False)

    op.create_table(
        'appmeta',
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )

    op.create_table(
        'orphancustomer',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('stripe_customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('claimed_org_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attached_org_id', sa.Integer(), nullable=True),
        sa.Column('attached_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['attached_org_id'], ['organization.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('orphancustomer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orphancustomer_stripe_customer_id'), ['stripe_customer_id'], unique=True)

    with op.batch_alter_table('authsession', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('client_ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))

    with op.batch_alter_table('apitoken', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('apitoken', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
    with op.batch_alter_table('authsession', schema=None) as batch_op:
        batch_op.drop_column('client_ip')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('last_seen_at')
    op.drop_table('orphancustomer')
    op.drop_table('appmeta')
    op.drop_table('passwordreset')
    op.drop_table('knowndevice')
    op.drop_table('loginthrottle')
    op.create_table(
        'loginthrottle',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('loginthrottle', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loginthrottle_email'), ['email'], unique=True)
