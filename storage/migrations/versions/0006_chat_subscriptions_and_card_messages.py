"""chat subscriptions and card messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('chat_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('watchlist', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('platform', 'chat_id', 'watchlist')
    )
    with op.batch_alter_table('chat_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_subscriptions_chat_id'), ['chat_id'], unique=False)

    op.create_table('card_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('signal_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('platform', 'chat_id', 'message_id')
    )
    with op.batch_alter_table('card_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_card_messages_signal_id'), ['signal_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('card_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_card_messages_signal_id'))
    op.drop_table('card_messages')
    with op.batch_alter_table('chat_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_subscriptions_chat_id'))
    op.drop_table('chat_subscriptions')
