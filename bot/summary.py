"""Profit and loss per venue, as /pnl shows it, and the daily summary built from it: one function
(:func:`daily_summary`) gives the summary as plain data, text and chart files, which every transport
renders its own way (Telegram: photo and caption; Discord: an embed with the chart; the console:
``/summary``).

"Realized" and "change" in a summary count from the previous day's summary (its values are kept in
the database when a scheduled summary is sent), or, before the first one, from the deposits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from bot.amounts import money_json
from bot.render import equity_chart, table
from bot.services import Services
from venues.models import ZERO

SUMMARY_KEY = "summary:last"  # {"day", "at", "rows": {"venue|ccy": {"equity", "realized"}}, "before": {...}}


@dataclass(frozen=True)
class VenuePnl:
    """One venue's account in one currency (money in that currency)."""

    venue: str
    currency: str
    deposits: Decimal  # the starting cash deposited
    equity: Decimal  # cash + positions at the last price
    realized: Decimal  # since the start, net of fees
    unrealized: Decimal  # of the open positions

    @property
    def key(self) -> str:
        return f"{self.venue}|{self.currency}"


@dataclass(frozen=True)
class Summary:
    """The daily summary of ``day`` (local, in ``timezone``) as of ``at`` (UTC): ``text`` (a table,
    plain: each transport escapes it), ``images`` (equity chart PNG paths, one per venue and
    currency with history) and ``data`` (the same numbers as strings)."""

    day: date
    at: datetime
    timezone: str
    text: str
    images: list[str]
    data: dict[str, Any]


def money(value: Decimal, currency: str = "") -> str:
    return f"{value:,.2f}{' ' + currency if currency else ''}"


def starting_cash(services: Services, currency: str, venue: str = "") -> Decimal:
    """The starting cash in ``currency`` (of ``venue``'s paper account: the ccxt one has its own)."""
    return services.settings.starting_cash(venue, currency)


async def venue_pnl(services: Services) -> list[VenuePnl]:
    """Every venue's account per currency it trades in, brought up to the clock."""
    rows: list[VenuePnl] = []
    for name, venue in services.venues.items():
        broker = venue.broker_required()
        positions = await broker.positions()
        realized_all = {p.symbol: p.realized_pnl for p in await broker.positions(include_closed=True)}
        instruments = await venue.instruments()
        # A margined futures position's value is already its unrealised P&L (venues/paper.py).
        margined = {i.symbol for i in instruments if i.margin_rate is not None}
        for currency in sorted({i.currency for i in instruments}):
            account = await broker.account(currency)
            if account.unfunded:  # an exchange quoting in many currencies: only those with money
                continue
            symbols = {i.symbol for i in instruments if i.currency == currency}
            realized = sum((v for k, v in realized_all.items() if k in symbols), ZERO)
            unrealized = account.positions_value - sum(
                (p.qty * p.avg_cost for p in positions if p.symbol in symbols and p.symbol not in margined), ZERO
            )
            # Measured from what the ledger says was deposited: the setting may have changed since.
            deposits = account.deposited if account.deposited is not None else starting_cash(services, currency, name)
            rows.append(VenuePnl(name, currency, deposits, account.equity, realized, unrealized))
    return rows


async def equity_charts(services: Services, rows: list[VenuePnl], *, prefix: str = "equity") -> list[str]:
    """The equity curve PNG of each venue and currency with at least two snapshots (what /pnl draws)."""
    images = []
    history = services.plans.equity_history()
    for row in rows:
        points = [(h.ts, h.equity) for h in history if h.venue == row.venue and h.currency == row.currency]
        if len(points) >= 2:
            path = services.charts_dir / f"{prefix}-{row.venue}-{row.currency}.png"
            title = f"{row.venue} equity"
            images.append(str(await equity_chart(points, path, row.currency, title, tz=services.settings.zone)))
    return images


async def daily_summary(services: Services, *, record: bool = False) -> Summary:
    """The summary as of the clock's now. ``record``: keep its values as today's, the baseline of
    the next day's summary (the scheduled summary does; ``/summary`` on demand does not)."""
    at = services.clock.now()
    zone = services.settings.zone
    local = at.astimezone(zone)
    day = local.date()
    rows = await venue_pnl(services)
    stored = services.signals.get_value(SUMMARY_KEY) or {}
    # The previous day's summary: the stored one if it is from an earlier day, else the one before it.
    base = stored if stored.get("day", "") < day.isoformat() else stored.get("before") or {}
    since = (
        f"since the summary of {datetime.fromisoformat(base['at']).astimezone(zone):%Y-%m-%d %H:%M} {zone.key}"
        if base
        else "since the deposits (no earlier summary)"
    )
    table_rows, data_rows = [], []
    for row in rows:
        before = base.get("rows", {}).get(row.key) if base else None
        realized = row.realized - Decimal(before["realized"]) if before else row.realized
        reference = Decimal(before["equity"]) if before else row.deposits
        change = row.equity - reference
        percent = f" ({change / reference * 100:+.2f}%)" if reference else ""
        table_rows.append(
            (
                row.venue,
                row.currency,
                money(row.equity),
                money(realized),
                money(row.unrealized),
                money(change) + percent,
            )
        )
        data_rows.append(
            {
                "venue": row.venue,
                "currency": row.currency,
                "equity": money_json(row.equity),
                "realized": money_json(realized),
                "unrealized": money_json(row.unrealized),
                "change": money_json(change),
                "deposits": money_json(row.deposits),
            }
        )
    text = (
        f"daily summary {day.isoformat()} {local:%H:%M} {zone.key}\n"
        + table(["venue", "ccy", "equity", "realized", "unrealized", "change"], table_rows)
        + f"\n\nrealized and change {since}"  # a blank line ends the table (a <pre> or code block)
    )
    images = await equity_charts(services, rows, prefix="summary-equity")
    if record:
        state = {
            "day": day.isoformat(),
            "at": at.isoformat(),
            "rows": {r.key: {"equity": str(r.equity), "realized": str(r.realized)} for r in rows},
        }
        previous = stored if stored.get("day", "") < day.isoformat() else stored.get("before")
        services.signals.set_value(SUMMARY_KEY, {**state, "before": _without_before(previous)}, at=at)
    data = {"day": day.isoformat(), "at": at.isoformat(), "since": base.get("at") if base else None, "pnl": data_rows}
    return Summary(day=day, at=at, timezone=zone.key, text=text, images=images, data=data)


def _without_before(state: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if not state else {k: v for k, v in state.items() if k != "before"}


def due_chats(services: Services, platform: str, at: datetime) -> list[int]:
    """The platform's chats due for the summary of the local day of ``at``: subscribed, summary on,
    their time (or the configured one) reached, not sent that day yet."""
    local = at.astimezone(services.settings.zone)
    return services.chats.summary_due(platform, local.date(), f"{local:%H:%M}", services.settings.summary_time)


def summary_sent(services: Services, platform: str, chat_id: int, summary: Summary) -> None:
    """Remember the chat got ``summary``'s day: not again that day, also after a restart."""
    services.chats.summary_sent(platform, chat_id, summary.day, at=services.clock.now())


def summary_times(services: Services) -> list[time]:
    """When the summary job fires: the configured time and every time a chat chose (local)."""
    chosen = {services.settings.summary_time, *services.chats.summary_times()}
    return [time.fromisoformat(t) for t in sorted(chosen)]
