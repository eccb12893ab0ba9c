"""Plain-text rendering shared by every transport (each one escapes or formats it its own way),
and the chart files that go with cards, /chart and /pnl."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from storage.signals import SignalStore
from venues import calendars
from venues.base import Venue

ZONES = {"XSHG": "Asia/Shanghai", "XNYS": "America/New_York"}


def _num(value: Any, places: int | None = None) -> str:
    if value is None or value == "":
        return "-"
    number = Decimal(str(value))
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places))
    text = format(number.normalize(), "f") if places is None else format(number, ",f")
    return text


def card_text(card: dict[str, Any]) -> str:
    """The signal card: what a trader needs to say yes or no, in a dozen lines (a spread's card:
    the underlying's levels, then the spread's legs, net debit, max loss and gain, breakeven, exit)."""
    tps = card.get("take_profits") or []
    plan = card.get("exit_plan") or []
    targets = "  ".join(
        f"TP{i} {_num(tp)}" + (f" ({Decimal(str(plan[i - 1])) * 100:.0f}%)" if i - 1 < len(plan) else "")
        for i, tp in enumerate(tps, 1)
    )
    side = card.get("side", "?")
    short = side == "SHORT"
    above = " (above)" if short else ""
    carry = f" (funding/borrow {_num(card.get('carry'), 2)})" if card.get("carry") else ""
    spread = bool(card.get("spread_lines"))
    lines = _spread_head(card) if spread else _stock_head(card, side, short, above, targets, carry)
    reasons = card.get("reasons") or []
    if reasons:
        lines.append("why: " + "; ".join(str(r) for r in reasons[:8]))
    notes = card.get("risk_notes") or []
    if notes:
        lines.append("notes: " + "; ".join(str(n) for n in notes))
    failed = [c["detail"] for c in card.get("risk", []) if not c.get("passed")]
    decision = card.get("risk_decision", "")
    lines.append(f"risk: {decision}" + (": " + "; ".join(failed) if failed else " (all checks passed)"))
    if card.get("expires_at"):
        expires = calendars.local_text(datetime.fromisoformat(card["expires_at"]), card.get("exchange_tz", "UTC"))
        lines.append(f"unanswered, it expires {expires}: no order")
    return "\n".join(lines)


def decision_text(
    signal_id: str | None,
    status: str,
    *,
    decision: str | None = None,
    actor: str | None = None,
    at: datetime | None = None,
    reason: str = "",
) -> str:
    """One line for what became of a signal once answered, each fact said once: "abc approved by
    alice at 2021-07-06 08:00 UTC: order abc placed; fills at the next bar's open", "abc rejected
    by bob: too late", "abc expired: no decision in time". ``status`` is the signal's status now,
    ``decision``/``actor``/``at`` the answer that counts (None when nobody answered), ``reason``
    the last status change's reason (the order's words for an executed signal). Without
    ``signal_id`` (a card's own outcome line) the line leads with the word in capitals:
    "APPROVED by alice ...", "EXPIRED: no decision in time"."""
    when = f" at {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if at is not None else ""
    if status == "expired" and decision in (None, "expired"):
        word, rest = "expired", ": no decision in time"
    elif decision == "rejected" or status == "rejected":
        word = "rejected"
        rest = (f" by {actor}{when}" if actor else "") + (f": {reason}" if reason and reason != "rejected" else "")
    elif decision == "approved" or status in ("approved", "executed"):
        word = "approved"
        rest = f" by {actor}{when}" if actor else ""
        if status == "executed":
            rest += f": {reason or 'order placed'}"
        elif status == "approved":
            rest += ": placing the order"
        else:
            rest += f", but no order was placed ({status}{': ' + reason if reason else ''})"
    else:
        word = status
        rest = (f" ({decision} by {actor}{when})" if decision and actor else "") + (f": {reason}" if reason else "")
    return f"{signal_id} {word}{rest}" if signal_id else f"{word.upper()}{rest}"


def signal_outcome(signals: SignalStore, signal_id: str, *, on_card: bool = False) -> str:
    """:func:`decision_text` of a stored signal: its status, the answer that counts, and the last
    status change's reason. ``on_card``: the card's own outcome line (no id, the word first)."""
    row = signals.get(signal_id)
    approval = signals.approval(signal_id)
    history = signals.history(signal_id)
    return decision_text(
        None if on_card else signal_id,
        row.status if row else "unknown",
        decision=approval.decision if approval else None,
        actor=approval.actor if approval else None,
        at=approval.decided_at if approval else None,
        reason=history[-1].reason if history else "",
    )


def _stock_head(card: dict[str, Any], side: str, short: bool, above: str, targets: str, carry: str) -> list[str]:
    currency = card.get("currency", "")
    return [
        f"{'SHORT (sell-to-open)' if short else side} {card.get('symbol', '?')} on {card.get('venue', '?')}"
        f" [{card.get('timeframe', '')}]  id {card.get('signal_id', '?')}",
        f"entry {_num(card.get('entry'))}  stop {_num(card.get('stop'))}{above}  {targets}".rstrip(),
        f"size {_num(card.get('qty'))} (~{_num(card.get('notional'), 2)} {currency})"
        f"  confidence {float(card.get('confidence') or 0):.2f}  reward/risk {card.get('reward_risk', '-')}",
        # Both after every cost: "expected" would read as a forecast, but it is the all-targets case.
        f"net if all targets hit {_num(card.get('expected_net_profit'), 2)} {currency}; "
        f"net loss at stop {_num(card.get('loss_at_stop'), 2)} {currency} (costs {_num(card.get('costs'), 2)}{carry})",
    ]


def _spread_head(card: dict[str, Any]) -> list[str]:
    """A decision expressed as an option spread: the underlying's levels (what the exits watch),
    then the spread's lines (tools.options via SpreadPlan.card_lines), its size and its risk."""
    spread = card.get("spread") or {}
    return [
        f"{card.get('side', '?')} {card.get('symbol', '?')} on {card.get('venue', '?')} as a "
        f"{spread.get('name', 'spread')} [{card.get('timeframe', '')}]  id {card.get('signal_id', '?')}",
        f"{card.get('symbol', '?')}: entry {_num(card.get('entry'))}  stop {_num(card.get('stop'))}"
        f"  TP1 {_num(spread.get('target'))} (the stop or TP1 closes the spread)",
        *[str(line) for line in card.get("spread_lines") or []],
        f"size {_num(card.get('qty'))} contracts (premium {_num(card.get('notional'), 2)} USD)"
        f"  confidence {float(card.get('confidence') or 0):.2f}  reward/risk {card.get('reward_risk', '-')}",
        f"max gain {_num(card.get('expected_net_profit'), 2)} USD after fees {_num(card.get('costs'), 2)}; "
        f"max loss {_num(card.get('loss_at_stop'), 2)} USD",
    ]


def plural(count: int, word: str) -> str:
    """ "1 symbol", "3 symbols", "0 candidates": a count with its noun (regular English plurals)."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def card_chart_path(charts_dir: Path, signal_id: str) -> Path:
    """Where a signal's card chart is (once rendered): its file name is the attachment's name too."""
    return charts_dir / f"signal-{signal_id}.png"


def signal_chart(*args: Any, **kwargs: Any) -> Path:
    """tools.charts.signal_chart, loaded on first use: matplotlib and mplfinance take about a
    second to import, which a command that draws nothing should not pay."""
    from tools.charts import signal_chart as draw

    return draw(*args, **kwargs)


def equity_curve_chart(*args: Any, **kwargs: Any) -> Path:
    """tools.charts.equity_curve_chart, loaded on first use (see signal_chart)."""
    from tools.charts import equity_curve_chart as draw

    return draw(*args, **kwargs)


async def card_chart(venue: Venue, card: dict[str, Any], charts_dir: Path, calendar: str) -> Path | None:
    """The card's chart PNG (rendered once; off the event loop, matplotlib is CPU work)."""
    path = card_chart_path(charts_dir, str(card["signal_id"]))
    if path.exists():
        return path
    bars = await venue.bars(card["symbol"], card.get("timeframe") or "1h", limit=120)
    if bars.empty or card.get("entry") is None or card.get("stop") is None:
        return None
    return await asyncio.to_thread(
        signal_chart,
        bars,
        symbol=card["symbol"],
        timeframe=card.get("timeframe", ""),
        side=card.get("side", ""),
        entry=Decimal(card["entry"]),
        stop=Decimal(card["stop"]),
        take_profits=[Decimal(t) for t in card.get("take_profits") or []],
        path=path,
        title_note=f"id {card['signal_id']}",
        tz=ZONES.get(calendar),
    )


async def symbol_chart(
    venue: Venue, symbol: str, timeframe: str, charts_dir: Path, calendar: str, levels: dict[str, Any] | None
) -> Path | None:
    bars = await venue.bars(symbol, timeframe, limit=120)
    if bars.empty:
        return None
    # Levels only for an open position's plan: a plain chart has no entry or stop to mark.
    levels = levels or {}
    safe = symbol.replace("/", "-")
    return await asyncio.to_thread(
        signal_chart,
        bars,
        symbol=symbol,
        timeframe=timeframe,
        side=levels.get("side"),
        entry=Decimal(str(levels["entry"])) if "entry" in levels else None,
        stop=Decimal(str(levels["stop"])) if "stop" in levels else None,
        take_profits=[Decimal(str(t)) for t in levels.get("take_profits", [])],
        path=charts_dir / f"chart-{safe}-{timeframe}.png",
        tz=ZONES.get(calendar),
    )


async def equity_chart(
    points: list[tuple[Any, Decimal]], path: Path, currency: str, title: str, *, tz: tzinfo | None = None
) -> Path:
    return await asyncio.to_thread(equity_curve_chart, points, path=path, currency=currency, title=title, tz=tz)
