"""Chat-side state of the transports: which chats receive which watchlists' cards, what else each
chat wants pushed (its notify settings: event kinds, the daily summary's time and the last day it was
sent), and which chat message shows which signal's card (so a decision edits it in every chat, also
after a restart)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine, false, true
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.db import transaction
from storage.tables import CardMessage, ChatNotify, ChatSubscription

ALL = "all"
KINDS = ("signals", "fills", "errors", "notices", "summary")
"""What a chat can turn on or off: signal cards, fills and exits, errors, notices, the daily summary."""
EVENT_KINDS = {"fill": "fills", "exit": "fills", "error": "errors", "notice": "notices", "summary": "summary"}
"""Transport.push_event's kind -> the setting that lets it through."""


@dataclass(frozen=True)
class NotifySettings:
    """One chat's notify settings; a chat that never changed them gets everything (the defaults)."""

    kinds: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(KINDS, True))
    summary_time: str | None = None  # "HH:MM" local; None = the configured default
    summary_sent_on: str | None = None  # local ISO date of the last summary sent

    def wants(self, kind: str) -> bool:
        return self.kinds[kind]


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
        (a card without a watchlist, e.g. from /signal, goes to "all" only), unless their
        signals are off."""
        wanted = [ALL] if not watchlist else [ALL, watchlist]
        with Session(self.engine) as session:
            query = (
                select(ChatSubscription.chat_id)
                .where(ChatSubscription.platform == platform, col(ChatSubscription.watchlist).in_(wanted))
                .distinct()
            )
            chats = sorted(session.exec(query).all())
        off = self._off(platform, "signals")
        return [c for c in chats if c not in off]

    def all_chats(self, platform: str) -> list[int]:
        with Session(self.engine) as session:
            query = select(ChatSubscription.chat_id).where(ChatSubscription.platform == platform).distinct()
            return sorted(session.exec(query).all())

    def chats_wanting(self, platform: str, event_kind: str) -> list[int]:
        """The subscribed chats that let an event of ``event_kind`` (Transport.push_event's: "fill",
        "exit", "error", "notice", "summary") through. Raises ValueError for an unknown kind."""
        if event_kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {event_kind!r}; kinds: {', '.join(EVENT_KINDS)}")
        off = self._off(platform, EVENT_KINDS[event_kind])
        return [c for c in self.all_chats(platform) if c not in off]

    def _off(self, platform: str, kind: str) -> set[int]:
        with Session(self.engine) as session:
            column = col(getattr(ChatNotify, kind))
            query = select(ChatNotify.chat_id).where(ChatNotify.platform == platform, column == false())
            return set(session.exec(query).all())

    # --- notify settings ---

    def notify_settings(self, platform: str, chat_id: int) -> NotifySettings:
        with Session(self.engine) as session:
            row = self._notify_row(session, platform, chat_id)
            if row is None:
                return NotifySettings()
            return NotifySettings(
                kinds={k: bool(getattr(row, k)) for k in KINDS},
                summary_time=row.summary_time,
                summary_sent_on=row.summary_sent_on,
            )

    def set_kind(self, platform: str, chat_id: int, kind: str, on: bool, *, at: datetime) -> None:
        """Turn one kind (one of KINDS) on or off for a chat. Raises ValueError for an unknown kind."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        self._update(platform, chat_id, at, **{kind: on})

    def set_summary_time(self, platform: str, chat_id: int, hhmm: str | None, *, at: datetime) -> None:
        """The chat's summary time ("HH:MM", local, checked by the caller), or None for the default."""
        self._update(platform, chat_id, at, summary_time=hhmm)

    def summary_times(self) -> set[str]:
        """The summary times chats chose (with the summary on), every platform: "HH:MM"."""
        with Session(self.engine) as session:
            query = select(ChatNotify.summary_time).where(
                col(ChatNotify.summary_time).is_not(None), col(ChatNotify.summary) == true()
            )
            return {t for t in session.exec(query).all() if t}

    def summary_due(self, platform: str, day: date, local_time: str, default_time: str) -> list[int]:
        """Subscribed chats with the summary on whose time ("HH:MM", or ``default_time``) is at or
        before ``local_time`` and that have not had the summary of ``day`` yet."""
        settings = {c: self.notify_settings(platform, c) for c in self.all_chats(platform)}
        return [
            chat
            for chat, s in settings.items()
            if s.wants("summary")
            and (s.summary_time or default_time) <= local_time
            and s.summary_sent_on != day.isoformat()
        ]

    def summary_sent(self, platform: str, chat_id: int, day: date, *, at: datetime) -> None:
        """Remember that the chat got the summary of ``day``: not again that day, also after a restart."""
        self._update(platform, chat_id, at, summary_sent_on=day.isoformat())

    def _update(self, platform: str, chat_id: int, at: datetime, **values: object) -> None:
        for attempt in range(2):
            try:
                with transaction(self.engine) as session:
                    row = self._notify_row(session, platform, chat_id) or ChatNotify(
                        platform=platform, chat_id=chat_id, updated_at=at
                    )
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.updated_at = at
                    session.add(row)
                return
            except IntegrityError:  # a concurrent first change of the same chat: update its row
                if attempt:
                    raise

    @staticmethod
    def _notify_row(session: Session, platform: str, chat_id: int) -> ChatNotify | None:
        return session.exec(
            select(ChatNotify).where(ChatNotify.platform == platform, ChatNotify.chat_id == chat_id)
        ).first()

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
