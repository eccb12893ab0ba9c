"""scan fires: one row per fired scheduled job, unique on (job id, fire time), so that one leader fires each

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scan_fires',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('fire_time', storage.types.UTCDateTime(), nullable=False),
    sa.Column('fired_at', storage.types.UTCDateTime(), nullable=False),
    sa.Column('fired_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'fire_time')
    )


def downgrade() -> None:
    op.drop_table('scan_fires')
