"""trading days of exchange calendars from a venue's trade calendar

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('trading_days',
    sa.Column('calendar', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('fetched_at', storage.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('calendar', 'day')
    )


def downgrade() -> None:
    op.drop_table('trading_days')
