"""SQLModel tables. Every timestamp is passed in by the caller from the injected Clock (no column
defaults to the wall clock), so the demo and backtests write their simulated time, not ours."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import Money, UTCDateTime


def _ts(*, index: bool = False, nullable: bool = False) -> Any:
    return Field(sa_type=UTCDateTime, index=index, nullable=nullable)


def _money(default: Decimal | None = Decimal(0), *, nullable: bool = False) -> Any:
    return Field(default=default, sa_type=Money, nullable=nullable)


def _json(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)  # telegram | discord | console
    platform_user_id: int = Field(sa_type=BigInteger)  # numeric ids only: names can be changed by anyone
    display_name: str = Field(default="", max_length=128)
    role: str = Field(max_length=16)  # viewer | trader | admin
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Watchlist(SQLModel, table=True):
    __tablename__ = "watchlists"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    venue: str = Field(max_length=32)
    symbols: list[str] = _json(list)
    timeframe: str = Field(default="15m", max_length=8)
    profile: str = Field(default="medium", max_length=16)
    enabled: bool = True
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SignalRow(SQLModel, table=True):
    __tablename__ = "signals"
    __table_args__ = (Index("ix_signals_status_created", "status", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    venue: str = Field(max_length=32)
    symbol: str = Field(max_length=32, index=True)
    side: str = Field(max_length=8)
    status: str = Field(max_length=16)
    policy: str = Field(default="", max_length=160)  # "llm:<model id>"
    entry: Decimal | None = _money(None, nullable=True)
    stop: Decimal | None = _money(None, nullable=True)
    take_profits: list[str] = _json(list)  # decimal strings
    qty: Decimal | None = _money(None, nullable=True)
    confidence: float | None = None
    horizon: str = Field(default="", max_length=32)
    reasons: list[str] = _json(list)
    card: dict[str, Any] = _json(dict)  # what was shown: costs, reward/risk, risk notes
    watchlist: str | None = Field(default=None, max_length=64)
    scan_run_id: int | None = Field(default=None, foreign_key="scan_runs.id")
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class SignalStatusChange(SQLModel, table=True):
    __tablename__ = "signal_status_history"

    id: int | None = Field(default=None, primary_key=True)
    signal_id: str = Field(foreign_key="signals.id", index=True, max_length=40)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    actor: str = Field(default="system", max_length=64)
    reason: str = Field(default="", max_length=500)
    at: datetime = _ts()


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"

    id: int | None = Field(default=None, primary_key=True)
    signal_id: str = Field(foreign_key="signals.id", unique=True, max_length=40)  # first answer wins
    decision: str = Field(max_length=16)  # approved | rejected | expired
    actor: str = Field(max_length=64)  # "telegram:12345", "auto:rule", "expiry"
    reason: str = Field(default="", max_length=500)
    decided_at: datetime = _ts()


class OrderRow(SQLModel, table=True):
    __tablename__ = "orders"

    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(max_length=64, unique=True)  # idempotency: one order per id, enforced here
    venue: str = Field(max_length=32, index=True)
    symbol: str = Field(max_length=32)
    side: str = Field(max_length=8)
    type: str = Field(max_length=8)
    qty: Decimal = _money()
    limit_price: Decimal | None = _money(None, nullable=True)
    stop_price: Decimal | None = _money(None, nullable=True)
    trail: Decimal | None = _money(None, nullable=True)
    parent: str | None = Field(default=None, max_length=64, index=True)  # the entry of a bracket child
    collar_low: Decimal | None = _money(None, nullable=True)  # a market order fills only inside
    collar_high: Decimal | None = _money(None, nullable=True)
    status: str = Field(max_length=16, index=True)
    reason: str = Field(default="", max_length=500)
    filled_qty: Decimal = _money()
    avg_fill_price: Decimal | None = _money(None, nullable=True)
    fees: Decimal = _money()
    signal_id: str | None = Field(default=None, max_length=40, index=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    filled_at: datetime | None = _ts(nullable=True)
    checked_until: datetime | None = _ts(nullable=True)
    triggered_at: datetime | None = _ts(nullable=True)


class FillRow(SQLModel, table=True):
    __tablename__ = "fills"

    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(foreign_key="orders.client_order_id", max_length=64, index=True)
    venue: str = Field(max_length=32)
    symbol: str = Field(max_length=32)
    side: str = Field(max_length=8)
    qty: Decimal = _money()
    price: Decimal = _money()
    fee: Decimal = _money()
    liquidity: str = Field(max_length=8)
    trade_day: str = Field(max_length=10)  # exchange-local session date, for T+1
    ts: datetime = _ts(index=True)


class PositionRow(SQLModel, table=True):
    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("venue", "symbol"),)

    id: int | None = Field(default=None, primary_key=True)
    venue: str = Field(max_length=32)
    symbol: str = Field(max_length=32)
    qty: Decimal = _money()
    avg_cost: Decimal = _money()
    realized_pnl: Decimal = _money()
    opened_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class CashEntry(SQLModel, table=True):
    """Append-only cash ledger; the balance is the sum of a venue/currency's entries."""

    __tablename__ = "cash_ledger"
    __table_args__ = (Index("ix_cash_venue_currency", "venue", "currency"),)

    id: int | None = Field(default=None, primary_key=True)
    venue: str = Field(max_length=32)
    currency: str = Field(max_length=8)
    amount: Decimal = _money()
    balance_after: Decimal = _money()
    kind: str = Field(max_length=16)  # deposit | buy | sell | fee | funding | borrow | adjustment
    ref: str = Field(default="", max_length=64)  # client order id for trades
    ts: datetime = _ts()


class DecisionTrace(SQLModel, table=True):
    __tablename__ = "decision_traces"

    id: int | None = Field(default=None, primary_key=True)
    signal_id: str | None = Field(default=None, max_length=40, index=True)
    node: str = Field(max_length=32)
    policy: str = Field(default="", max_length=160)  # "llm:<model id>"
    model: str = Field(default="", max_length=128)
    request: dict[str, Any] = _json(dict)
    response: dict[str, Any] = _json(dict)
    tool_calls: list[Any] = _json(list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = _money()
    latency_ms: float = 0.0
    outcome: str = Field(default="", max_length=500)
    created_at: datetime = _ts()


class ScanRun(SQLModel, table=True):
    __tablename__ = "scan_runs"

    id: int | None = Field(default=None, primary_key=True)
    watchlist: str = Field(max_length=64, index=True)
    venue: str = Field(max_length=32)
    trigger: str = Field(default="schedule", max_length=16)  # schedule | manual | demo
    status: str = Field(default="running", max_length=16)  # running | done | failed
    universe_size: int = 0
    candidates: int = 0
    signals: int = 0
    error: str = Field(default="", max_length=1000)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=128)
    detail: dict[str, Any] = _json(dict)
    ts: datetime = _ts(index=True)


class KeyValue(SQLModel, table=True):
    """Small durable settings: the simulated clock of a demo data dir, the kill switch."""

    __tablename__ = "kv"

    key: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = _json(dict)
    updated_at: datetime = _ts()


class TradePlan(SQLModel, table=True):
    """How an approved entry is managed once filled: stop, targets, trailing stop, time stop."""

    __tablename__ = "trade_plans"

    id: int | None = Field(default=None, primary_key=True)
    signal_id: str = Field(foreign_key="signals.id", unique=True, max_length=40)
    venue: str = Field(max_length=32, index=True)
    symbol: str = Field(max_length=32)
    timeframe: str = Field(max_length=8)
    status: str = Field(max_length=16, index=True)  # entry_pending | open | closed | cancelled
    qty_entry: Decimal = _money()
    qty_open: Decimal = _money()
    entry_price: Decimal | None = _money(None, nullable=True)
    stop: Decimal = _money()
    trailing_stop: Decimal | None = _money(None, nullable=True)
    take_profits: list[str] = _json(list)
    exit_weights: list[str] = _json(list)
    targets_hit: int = 0
    highest: Decimal | None = _money(None, nullable=True)
    time_stop_at: datetime | None = _ts(nullable=True)
    checked_until: datetime | None = _ts(nullable=True)  # bars closing up to here were already managed
    exit_orders: list[str] = _json(list)  # client order ids of the bracket (stop, targets) and a time exit
    announced: list[str] = _json(list)  # events already told to the chat (exit fills, T+1 holds), by key
    close_reason: str = Field(default="", max_length=200)
    opened_at: datetime | None = _ts(nullable=True)
    closed_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class EquitySnapshot(SQLModel, table=True):
    """Account value over time, written on every scheduler tick: what /pnl draws."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (UniqueConstraint("venue", "currency", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    venue: str = Field(max_length=32)
    currency: str = Field(max_length=8)
    cash: Decimal = _money()
    equity: Decimal = _money()
    ts: datetime = _ts(index=True)


class LLMCacheEntry(SQLModel, table=True):
    """An LLM answer keyed by a hash of the exact request: a re-run asks nobody twice."""

    __tablename__ = "llm_cache"

    request_hash: str = Field(primary_key=True, max_length=64)
    model: str = Field(max_length=128)
    request: dict[str, Any] = _json(dict)
    response: dict[str, Any] = _json(dict)
    hits: int = 0
    created_at: datetime = _ts()
    last_hit_at: datetime | None = _ts(nullable=True)


class ChatSubscription(SQLModel, table=True):
    """A chat that receives a watchlist's cards (or every watchlist's: ``watchlist == "all"``)."""

    __tablename__ = "chat_subscriptions"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "watchlist"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)  # telegram | discord
    chat_id: int = Field(sa_type=BigInteger, index=True)
    watchlist: str = Field(max_length=64)  # a watchlist name, or "all"
    created_at: datetime = _ts()


class CardMessage(SQLModel, table=True):
    """Which chat message shows which signal's card, so a decision edits it everywhere, also after a
    restart. ``kind`` says how it is edited: "caption" (a photo's caption) or "text"."""

    __tablename__ = "card_messages"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    signal_id: str = Field(max_length=40, index=True)
    chat_id: int = Field(sa_type=BigInteger)
    message_id: int = Field(sa_type=BigInteger)
    kind: str = Field(default="text", max_length=16)
    created_at: datetime = _ts()


class TradingDay(SQLModel, table=True):
    """A trading day of an exchange calendar from a venue's own trade calendar (akshare's, for
    XSHG), kept so that sessions past exchange-calendars' horizon survive a restart offline."""

    __tablename__ = "trading_days"

    calendar: str = Field(primary_key=True, max_length=16)  # exchange-calendars name: XSHG
    day: date = Field(primary_key=True)
    source: str = Field(max_length=64)  # where it came from: "akshare tool_trade_date_hist_sina"
    fetched_at: datetime = _ts()


class ChatNotify(SQLModel, table=True):
    """What one subscribed chat wants pushed (no row: everything, the summary at the configured
    time), and the local day its daily summary was last sent (so a restart sends it once a day)."""

    __tablename__ = "chat_notify"
    __table_args__ = (UniqueConstraint("platform", "chat_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    chat_id: int = Field(sa_type=BigInteger)
    signals: bool = True  # new signal cards
    fills: bool = True  # fills and exits
    errors: bool = True  # a scan that failed
    notices: bool = True  # e.g. the LLM's daily token budget is spent
    summary: bool = True  # the daily summary
    summary_time: str | None = Field(default=None, max_length=5)  # "HH:MM" local; None = TRADEOPS_SUMMARY_TIME
    summary_sent_on: str | None = Field(default=None, max_length=10)  # local ISO date of the last summary sent
    updated_at: datetime = _ts()


class ScanFire(SQLModel, table=True):
    """One fire of a scheduled job (a watchlist's scan, the daily summary): the unique (job id,
    scheduled fire time) is what lets exactly one of several `tradeops run` processes fire it."""

    __tablename__ = "scan_fires"
    __table_args__ = (UniqueConstraint("job_id", "fire_time"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=100)  # ScanJob.id: a watchlist name, "daily:summary"
    fire_time: datetime = _ts()  # the trigger's scheduled time (the latest one when coalesced)
    fired_at: datetime = _ts()  # the clock when the fire was claimed (later than fire_time when late)
    fired_by: str = Field(max_length=200)  # "host:pid" of the process that fired it
