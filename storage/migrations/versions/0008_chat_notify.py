"""chat notify settings: per-chat event filters and the daily summary's time and last day sent

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('chat_notify',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('signals', sa.Boolean(), nullable=False),
    sa.Column('fills', sa.Boolean(), nullable=False),
    sa.Column('errors', sa.Boolean(), nullable=False),
    sa.Column('notices', sa.Boolean(), nullable=False),
    sa.Column('summary', sa.Boolean(), nullable=False),
    sa.Column('summary_time', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
    sa.Column('summary_sent_on', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.Column('updated_at', storage.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('platform', 'chat_id')
    )


def downgrade() -> None:
    op.drop_table('chat_notify')
