"""longer policy names

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('decision_traces', schema=None) as batch_op:
        batch_op.alter_column('policy',
               existing_type=sa.VARCHAR(length=32),
               type_=sqlmodel.sql.sqltypes.AutoString(length=160),
               existing_nullable=False)

    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.alter_column('policy',
               existing_type=sa.VARCHAR(length=32),
               type_=sqlmodel.sql.sqltypes.AutoString(length=160),
               existing_nullable=False)



def downgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.alter_column('policy',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=160),
               type_=sa.VARCHAR(length=32),
               existing_nullable=False)

    with op.batch_alter_table('decision_traces', schema=None) as batch_op:
        batch_op.alter_column('policy',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=160),
               type_=sa.VARCHAR(length=32),
               existing_nullable=False)

