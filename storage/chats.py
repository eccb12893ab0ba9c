"""Chat-side state of the transports: which chats receive which watchlists' cards, and which chat
message shows which signal's card (so a decision edits it in every chat, also after a restart)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.db import transaction
from storage.tables import CardMessage, ChatSubscription

ALL = "all"


@dataclass(frozen=True)
class CardRef:
    chat_id: int
    message_id: int
    kind: str  # "caption" | "text"


class ChatStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- subscriptions ---

    def subscribe(self, platform: str, chat_id: int, watchlist: str, *, at: datetime) -> bool:
        """True when the subscription is new; subscribing twice is a no-op."""
        try:
            with transaction(self.engine) as session:
                if self._subscription(session, platform, chat_id, watchlist) is not None:
                    return False
                session.add(ChatSubscription(platform=platform, chat_id=chat_id, watchlist=watchlist, created_at=at))
        except IntegrityError:  # a concurrent subscribe of the same chat to the same watchlist
            return False
        return True

    def unsubscribe(self, platform: str, chat_id: int, watchlist: str | None = None) -> list[str]:
        """Remove one subscription (or, without a watchlist, all of the chat's); the names removed."""
        with transaction(self.engine) as session:
            query = select(ChatSubscription).where(
                ChatSubscription.platform == platform, ChatSubscription.chat_id == chat_id
            )
            if watchlist is not None:
                query = query.where(ChatSubscription.watchlist == watchlist)
            rows = list(session.exec(query).all())
            for row in rows:
                session.delete(row)
            return sorted(r.watchlist for r in rows)

    def subscriptions(self, platform: str, chat_id: int) -> list[str]:
        with Session(self.engine) as session:
            query = select(ChatSubscription.watchlist).where(
                ChatSubscription.platform == platform, ChatSubscription.chat_id == chat_id
            )
            return sorted(session.exec(query).all())

    def chats_for(self, platform: str, watchlist: str | None) -> list[int]:
        """The chats that receive a card of ``watchlist``: its subscribers and those of "all"
        (a card without a watchlist, e.g. from /signal, goes to "all" only)."""
        wanted = [ALL] if not watchlist else [ALL, watchlist]
        with Session(self.engine) as session:
            query = (
                select(ChatSubscription.chat_id)
                .where(ChatSubscription.platform == platform, col(ChatSubscription.watchlist).in_(wanted))
                .distinct()
            )
            return sorted(session.exec(query).all())

    def all_chats(self, platform: str) -> list[int]:
        with Session(self.engine) as session:
            query = select(ChatSubscription.chat_id).where(ChatSubscription.platform == platform).distinct()
            return sorted(session.exec(query).all())

    @staticmethod
    def _subscription(session: Session, platform: str, chat_id: int, watchlist: str) -> ChatSubscription | None:
        return session.exec(
            select(ChatSubscription).where(
                ChatSubscription.platform == platform,
                ChatSubscription.chat_id == chat_id,
                ChatSubscription.watchlist == watchlist,
            )
        ).first()

    # --- card messages ---

    def remember_card(
        self, platform: str, signal_id: str, chat_id: int, message_id: int, *, kind: str, at: datetime
    ) -> None:
        with transaction(self.engine) as session:
            session.add(
                CardMessage(
                    platform=platform,
                    signal_id=signal_id,
                    chat_id=chat_id,
                    message_id=message_id,
                    kind=kind,
                    created_at=at,
                )
            )

    def cards(self, platform: str, signal_id: str) -> list[CardRef]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(CardMessage)
                .where(CardMessage.platform == platform, CardMessage.signal_id == signal_id)
                .order_by(col(CardMessage.id))
            ).all()
            return [CardRef(r.chat_id, r.message_id, r.kind) for r in rows]
