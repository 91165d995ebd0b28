"""worker coordination: shared rate buckets and leases

Revision ID: c4f1d2e3a5b6
Revises: b929f1c788ff
Create Date: 2026-11-25 23:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = 'c4f1d2e3a5b6'
down_revision = 'b929f1c788ff'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_buckets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('next_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_rate_buckets'))
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )


def downgrade() -> None:
    op.drop_table('leases')
    op.drop_table('rate_buckets')
