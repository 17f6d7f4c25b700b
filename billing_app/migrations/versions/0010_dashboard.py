"""dashboard: the billing profile mirror (payment method, billing details, discounts, next invoice),
the retention offer per organization, a paused subscription's resume date, payment amounts' parts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'billingprofile',
        sa.Column('org_id', sa.Integer(), nullable=False),
        sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('address_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('tax_ids_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('card_brand', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('card_last4', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column('card_exp_month', sa.Integer(), nullable=True),
        sa.Column('card_exp_year', sa.Integer(), nullable=True),
        sa.Column('discounts_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('next_invoice_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('org_id'),
    )
    op.create_table(
        'retentionoffer',
        sa.Column('org_id', sa.Integer(), nullable=False),
        sa.Column('coupon_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('offered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('declined_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('org_id'),
    )
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pause_resumes_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subtotal', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('discount', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('tax', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_column('tax')
        batch_op.drop_column('discount')
        batch_op.drop_column('subtotal')
    with op.batch_alter_table('orgsubscription', schema=None) as batch_op:
        batch_op.drop_column('pause_resumes_at')
    op.drop_table('retentionoffer')
    op.drop_table('billingprofile')
