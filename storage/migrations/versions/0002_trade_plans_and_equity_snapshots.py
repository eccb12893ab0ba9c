"""trade plans and equity snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('equity_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('venue', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('cash', storage.types.Money(length=64), nullable=False),
    sa.Column('equity', storage.types.Money(length=64), nullable=False),
    sa.Column('ts', storage.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('venue', 'currency', 'ts')
    )
    with op.batch_alter_table('equity_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_equity_snapshots_ts'), ['ts'], unique=False)

    op.create_table('trade_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signal_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('venue', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('symbol', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('timeframe', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('qty_entry', storage.types.Money(length=64), nullable=False),
    sa.Column('qty_open', storage.types.Money(length=64), nullable=False),
    sa.Column('entry_price', storage.types.Money(length=64), nullable=True),
    sa.Column('stop', storage.types.Money(length=64), nullable=False),
    sa.Column('trailing_stop', storage.types.Money(length=64), nullable=True),
    sa.Column('take_profits', sa.JSON(), nullable=False),
    sa.Column('exit_weights', sa.JSON(), nullable=False),
    sa.Column('targets_hit', sa.Integer(), nullable=False),
    sa.Column('highest', storage.types.Money(length=64), nullable=True),
    sa.Column('time_stop_at', storage.types.UTCDateTime(), nullable=True),
    sa.Column('checked_until', storage.types.UTCDateTime(), nullable=True),
    sa.Column('exit_orders', sa.JSON(), nullable=False),
    sa.Column('close_reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('opened_at', storage.types.UTCDateTime(), nullable=True),
    sa.Column('closed_at', storage.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', storage.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['signal_id'], ['signals.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('signal_id')
    )
    with op.batch_alter_table('trade_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trade_plans_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_trade_plans_venue'), ['venue'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trade_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trade_plans_venue'))
        batch_op.drop_index(batch_op.f('ix_trade_plans_status'))

    op.drop_table('trade_plans')
    with op.batch_alter_table('equity_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_equity_snapshots_ts'))

    op.drop_table('equity_snapshots')
