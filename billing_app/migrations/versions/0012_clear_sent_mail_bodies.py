"""clear_sent_mail_bodies: emails already delivered keep no body (reset links, invitation tokens)

The mail worker now clears a row's text and HTML once SMTP accepted it; this does the same for
rows sent before. Kept rows (no SMTP_URL, shown at /dev/mail) keep theirs. Data only: the body
cannot come back, so the downgrade changes nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 07:30:00
"""
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE notification SET text_body = '', html_body = '' WHERE state = 'sent'")


def downgrade() -> None:
    pass
