"""operators: the is_operator flag, the audit log, bulk reconcile runs; MRR inputs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_operator', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('discount_percent_off', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('discount_amount_off', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_orgsubscription_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_orgsubscription_ended_at'), ['ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_orgsubscription_trial_end'), ['trial_end'], unique=False)

    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_payment_status_attempts', ['status', 'attempt_count'], unique=False)

    op.create_table(
        'operatoraudit',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('operator_id', sa.Integer(), nullable=True),
        sa.Column('operator_email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(['operator_id'], ['user.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('operatoraudit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_operatoraudit_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_operatoraudit_operator_id'), ['operator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_operatoraudit_action'), ['action'], unique=False)

    op.create_table(
        'reconcilerun',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cursors_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('fetched', sa.Integer(), nullable=False),
        sa.Column('customers_total', sa.Integer(), nullable=False),
        sa.Column('customers_done', sa.Integer(), nullable=False),
        sa.Column('last_customer', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('changes', sa.Integer(), nullable=False),
        sa.Column('orphans', sa.Integer(), nullable=False),
        sa.Column('calls', sa.Integer(), nullable=False),
        sa.Column('started_by', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('reconcilerun', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconcilerun_state'), ['state'], unique=False)

    op.create_table(
        'reconcilestage',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('stripe_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['reconcilerun.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id', 'stripe_id', name='uq_reconcilestage_run_object'),
    )
    with op.batch_alter_table('reconcilestage', schema=None) as batch_op:
        batch_op.create_index('ix_reconcilestage_run_customer', ['run_id', 'customer_id'], unique=False)


def downgrade() -> None:
    op.drop_table('reconcilestage')
    op.drop_table('reconcilerun')
    op.drop_table('operatoraudit')
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_status_attempts')
        batch_op.drop_column('attempt_count')
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orgsubscription_trial_end'))
        batch_op.drop_index(batch_op.f('ix_orgsubscription_ended_at'))
        batch_op.drop_index(batch_op.f('ix_orgsubscription_started_at'))
        batch_op.drop_column('discount_amount_off')
        batch_op.drop_column('discount_percent_off')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('is_operator')
