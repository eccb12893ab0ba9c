"""How good is the rule policy, honestly: walk-forward over every shipped series, out of sample only.

The rule policy (agent/policies.py, no parameter to fit) with the medium risk profile and all costs
(fees, stamp duty, slippage, funding), run by `tradeops backtest --walk-forward` on each series of
venues/replay/catalog.py on its own: K folds in time order with purge and embargo, each test window
a backtest from the starting capital; only the test windows are scored, and nothing is tuned (the
policy has nothing to tune, so the training windows are unused). Prints per series and in total:
trades, TP1 hit rate, win rate, profit factor, Sharpe, max drawdown (plus total return, average R
and how the trades ended). Figures only, no asserts.

The windows are trimmed (the whole run takes about 70 s on the 2-core development machine): the
intraday series to 2021-07-01 -> 2021-08-13 (the six weeks every intraday series covers; the SPY
minutes end there), the daily A-shares to 2019-07-01 -> 2022-01-01 (their
whole span after half a year of indicator warm-up). ``--full`` runs every series over its whole span.

Run from the repo root: ``.venv/bin/python benchmarks/strategy.py [--full] [--folds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where "venues" would be
# benchmarks/venues.py rather than the venues package: the repo root goes first instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bot.backtest import walk_forward_backtest  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from scheduler.backtest import metrics  # noqa: E402
from scheduler.backtest.engine import BacktestSpec  # noqa: E402
from scheduler.backtest.metrics import TradeRecord  # noqa: E402
from venues.replay.catalog import MARKETS  # noqa: E402

INTRADAY = (datetime(2021, 7, 1, tzinfo=UTC), datetime(2021, 8, 13, tzinfo=UTC))
DAILY = (datetime(2019, 7, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
# Whole spans for --full (first bar + warm-up, last bar).
FULL = {
    "BTC/USD": (datetime(2021, 2, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)),
    "ETH/USDT": (datetime(2021, 2, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)),
    "510300.SH": (datetime(2021, 5, 10, tzinfo=UTC), datetime(2022, 1, 18, tzinfo=UTC)),
    "AMZN": (datetime(2021, 2, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC)),
    "SPY": (datetime(2021, 7, 1, tzinfo=UTC), datetime(2021, 8, 13, tzinfo=UTC)),
}
# The scan timeframe of each series: the demo's watchlists' (bot/services.py DEFAULT_WATCHLISTS),
# never finer than the series itself.
TIMEFRAME = {"510300.SH": "15m", "SPY": "15m"}
# Enough for one A-share lot of Moutai (about 200,000 CNY) within the medium profile's 20% cap.
CAPITAL = {"CNY": Decimal(1_000_000)}
DEFAULT_CAPITAL = Decimal(100_000)
PURGE, EMBARGO = 2, 2  # scan bars: the policy fits nothing, so a token gap between folds is enough


@dataclass(frozen=True)
class Row:
    label: str
    doc: dict[str, Any]
    capital: Decimal
    seconds: float


def series() -> list[tuple[str, str, str, str]]:
    """(venue, symbol, timeframe, currency) of every shipped series."""
    out = []
    for market in MARKETS.values():
        for s in market.series:
            i = s.instrument
            out.append((market.venue, i.symbol, TIMEFRAME.get(i.symbol, i.timeframe), i.currency))
    return out


def rules_spec(
    venue: str, symbol: str, timeframe: str, window: tuple[datetime, datetime], capital: Decimal
) -> BacktestSpec:
    """One series' backtest with the rule policy, the medium profile and all costs."""
    return BacktestSpec(
        venue=venue,
        symbols=(symbol,),
        timeframe=timeframe,
        start=window[0],
        end=window[1],
        policy="rules",
        capital=capital,
        profile="medium",
    )


def window(symbol: str, timeframe: str, full: bool) -> tuple[datetime, datetime]:
    if timeframe == "1d":
        return DAILY
    return FULL[symbol] if full else INTRADAY


def records(doc: dict[str, Any], capital: Decimal) -> list[TradeRecord]:
    """The walk-forward's trades with P&L in units of the starting capital, so series in different
    currencies pool into one total."""
    out = []
    for t in doc["trades"]:
        out.append(
            TradeRecord(
                signal_id=t["signal_id"],
                symbol=t["symbol"],
                side=t["side"],
                entry_time=datetime.fromisoformat(t["entry_time"]),
                entry_price=t["entry_price"],
                qty=t["qty"],
                exit_time=datetime.fromisoformat(t["exit_time"]) if t["exit_time"] else None,
                exit_price=t["exit_price"],
                pnl=t["pnl"] / float(capital),
                fees=t["fees"] / float(capital),
                r=t["r"],
                reason=t["reason"],
                tp1_hit=t["tp1_hit"],
            )
        )
    return out


def how_it_ended(trade: TradeRecord) -> str:
    """How a closed trade ended, without its prices: the stop before or after TP1 (after TP1 the
    stop sits at break-even or trails), the last target, the time stop, or a gap through the stop."""
    reason = trade.reason
    if reason.startswith("gapped through the stop"):
        return "gapped through the stop" + (" after TP1" if trade.tp1_hit else " before TP1")
    if reason.startswith("stop"):
        return "stop after TP1" if trade.tp1_hit else "stop before TP1"
    if reason.startswith("TP"):
        return "last target"
    if "time stop" in reason:
        return "time stop" + (" after TP1" if trade.tp1_hit else " before TP1")
    return reason.split(":")[0]


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


HEADER = (
    "| series | window (out of sample) | trades | TP1 hit | win rate | profit factor | avg R | Sharpe "
    "| max DD | return |"
)


def table_row(label: str, tested: str, m: dict[str, Any]) -> str:
    return (
        f"| {label} | {tested} | {m['trades']} | {pct(m['tp1_hit_rate'])} | {pct(m['win_rate'])} "
        f"| {num(m['profit_factor'])} | {num(m['average_r'])} | {num(m['sharpe'])} | {pct(m['max_drawdown'])} "
        f"| {pct(m['total_return'])} |"
    )


async def main(full: bool, folds: int) -> None:
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tradeops-strategy-") as tmp:
        settings = load_settings(data_dir=Path(tmp))
        for venue, symbol, timeframe, currency in series():
            start, end = window(symbol, timeframe, full)
            capital = CAPITAL.get(currency, DEFAULT_CAPITAL)
            spec = rules_spec(venue, symbol, timeframe, (start, end), capital)
            t0 = time.perf_counter()
            doc = await walk_forward_backtest(settings, spec, folds, purge=PURGE, embargo=EMBARGO)
            rows.append(Row(f"{symbol} {timeframe}", doc, capital, time.perf_counter() - t0))
            print(f"  {symbol} {timeframe}: {doc['metrics']['trades']} trades in {rows[-1].seconds:.0f} s", flush=True)

    print()
    print(f"rule policy, medium profile, all costs; walk-forward {folds} folds, purge {PURGE}, embargo {EMBARGO}")
    print(HEADER)
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    pooled: list[TradeRecord] = []
    for row in rows:
        folds_doc = row.doc["walk_forward"]["folds"]
        tested = f"{folds_doc[0]['test'][0][:10]} -> {folds_doc[-1]['test'][1][:10]}"
        print(table_row(row.label, tested, row.doc["metrics"]))
        pooled += records(row.doc, row.capital)
    sharpes = [r.doc["metrics"]["sharpe"] for r in rows if r.doc["metrics"]["sharpe"] is not None]
    drawdowns = [r.doc["metrics"]["max_drawdown"] for r in rows if r.doc["metrics"]["max_drawdown"] is not None]
    returns = [r.doc["metrics"]["total_return"] for r in rows if r.doc["metrics"]["total_return"] is not None]
    total = {
        "trades": len(pooled),
        "tp1_hit_rate": metrics.tp1_hit_rate(pooled),
        "win_rate": metrics.win_rate(pooled),
        "profit_factor": metrics.profit_factor(pooled),
        "average_r": metrics.average_r(pooled),
        "sharpe": sum(sharpes) / len(sharpes) if sharpes else None,
        "max_drawdown": min(drawdowns) if drawdowns else None,
        "total_return": sum(returns) / len(returns) if returns else None,
    }
    print(table_row("**total**", "pooled trades; Sharpe, return: mean; DD: worst", total))
    print()
    done = metrics.closed(pooled)
    ended = Counter(how_it_ended(t) for t in done)
    print("how the closed trades ended (count, mean R, P&L as % of capital summed over series):")
    for reason, count in ended.most_common():
        same = [t for t in done if how_it_ended(t) == reason]
        rs = [t.r for t in same if t.r is not None]
        print(
            f"  {reason}: {count}, mean R {num(sum(rs) / len(rs) if rs else None)}, "
            f"P&L {sum(t.pnl for t in same) * 100:.2f}%"
        )
    fees = sum(t.fees for t in pooled)
    gross = sum(t.pnl + t.fees for t in done)
    print(f"fees paid: {fees * 100:.2f}% of capital summed over series; P&L before fees {gross * 100:.2f}%")
    print(f"run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every series over its whole span (slow)")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.full, args.folds))
