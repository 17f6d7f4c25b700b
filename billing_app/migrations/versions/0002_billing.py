"""billing mirror: plans, customers, subscriptions, payments, webhook events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:32:36.658329
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('features_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('limits_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('display_order', sa.Integer(), nullable=False),
    sa.Column('legacy', sa.Boolean(), nullable=False),
    sa.Column('most_popular', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('stripe_product_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_key'), ['key'], unique=True)

    op.create_table('webhookevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_event_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('payload', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhookevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhookevent_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhookevent_processed_at'), ['processed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhookevent_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhookevent_stripe_event_id'), ['stripe_event_id'], unique=True)

    op.create_table('billingcustomer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('stripe_customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('billingcustomer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billingcustomer_org_id'), ['org_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_billingcustomer_stripe_customer_id'), ['stripe_customer_id'], unique=True)

    op.create_table('payment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('stripe_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('invoice_url', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('receipt_url', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('pdf_url', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_index('ix_payment_org_created', ['org_id', 'created'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_stripe_id'), ['stripe_id'], unique=True)

    op.create_table('planperiod',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('period_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('trial_days', sa.Integer(), nullable=True),
    sa.Column('lookup_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('stripe_price_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plan_id', 'period_type', name='uq_planperiod_plan_type')
    )
    with op.batch_alter_table('planperiod', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_planperiod_lookup_key'), ['lookup_key'], unique=True)
        batch_op.create_index(batch_op.f('ix_planperiod_plan_id'), ['plan_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_planperiod_stripe_price_id'), ['stripe_price_id'], unique=False)

    op.create_table('orgsubscription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('stripe_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('one_off', sa.Boolean(), nullable=False),
    sa.Column('plan_period_id', sa.Integer(), nullable=True),
    sa.Column('stripe_price_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('current_period_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('canceled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('trial_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ),
    sa.ForeignKeyConstraint(['plan_period_id'], ['planperiod.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orgsubscription_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orgsubscription_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_orgsubscription_stripe_id'), ['stripe_id'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orgsubscription_stripe_id'))
        batch_op.drop_index(batch_op.f('ix_orgsubscription_status'))
        batch_op.drop_index(batch_op.f('ix_orgsubscription_org_id'))

    op.drop_table('orgsubscription')
    with op.batch_alter_table('planperiod', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_planperiod_stripe_price_id'))
        batch_op.drop_index(batch_op.f('ix_planperiod_plan_id'))
        batch_op.drop_index(batch_op.f('ix_planperiod_lookup_key'))

    op.drop_table('planperiod')
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_stripe_id'))
        batch_op.drop_index('ix_payment_org_created')

    op.drop_table('payment')
    with op.batch_alter_table('billingcustomer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billingcustomer_stripe_customer_id'))
        batch_op.drop_index(batch_op.f('ix_billingcustomer_org_id'))

    op.drop_table('billingcustomer')
    with op.batch_alter_table('webhookevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhookevent_stripe_event_id'))
        batch_op.drop_index(batch_op.f('ix_webhookevent_state'))
        batch_op.drop_index(batch_op.f('ix_webhookevent_processed_at'))
        batch_op.drop_index(batch_op.f('ix_webhookevent_customer_id'))

    op.drop_table('webhookevent')
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_key'))

    op.drop_table('plan')
