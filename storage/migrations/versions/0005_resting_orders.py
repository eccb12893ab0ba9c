"""resting orders: stop price, trailing distance, bracket parent, drift collar, fill time, matching state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stop_price', storage.types.Money(length=64), nullable=True))
        batch_op.add_column(sa.Column('trail', storage.types.Money(length=64), nullable=True))
        batch_op.add_column(sa.Column('parent', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('collar_low', storage.types.Money(length=64), nullable=True))
        batch_op.add_column(sa.Column('collar_high', storage.types.Money(length=64), nullable=True))
        batch_op.add_column(sa.Column('filled_at', storage.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('checked_until', storage.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('triggered_at', storage.types.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_orders_parent'), ['parent'], unique=False)
    with op.batch_alter_table('trade_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('announced', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('trade_plans', schema=None) as batch_op:
        batch_op.drop_column('announced')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_parent'))
        for column in ('triggered_at', 'checked_until', 'filled_at', 'collar_high', 'collar_low', 'parent', 'trail', 'stop_price'):
            batch_op.drop_column(column)
