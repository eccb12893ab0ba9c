"""`tradeops backtest` end to end on the shipped replay data: the live path (screen, rule policy,
risk gate, paper broker, exits) on a simulated clock, every signal approved, a fresh database."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import venues.replay.venue as replay_venue
from bot.backtest import backtest, chat_text, parse_params, result_text, walk_forward_backtest, walk_forward_text
from bot.cli import app
from bot.settings import load_settings
from scheduler.backtest.engine import BacktestError, BacktestResult, BacktestSpec
from venues.clock import window_text
from venues.errors import UnknownSymbolError
from venues.recorded import BarSeries
from venues.replay.loader import load_bar_file
from venues.timeframes import parse_timeframe

START = datetime(2021, 7, 1, tzinfo=UTC)
END = datetime(2021, 7, 6, tzinfo=UTC)
POISON_FROM = END
# Five days of BTC/USD hours with $100: the rule policy trades in it (fractions of a bitcoin).
SPEC = BacktestSpec(
    venue="replay-crypto",
    symbols=("BTC/USD",),
    timeframe="1h",
    start=START,
    end=END,
    policy="rules",
    capital=Decimal(100),
    profile="medium",
)
CLI_ARGS = [
    "backtest", "--venue", "replay-crypto", "--symbols", "BTC/USD", "--timeframe", "1h",
    "--from", "2021-07-01", "--to", "2021-07-05", "--capital", "100", "--json",
]  # fmt: skip


def run(tmp: Path, spec: BacktestSpec = SPEC) -> BacktestResult:
    return asyncio.run(backtest(load_settings(data_dir=tmp), spec))


def comparable(result: BacktestResult | dict[str, Any]) -> dict[str, Any]:
    doc = result.to_json() if isinstance(result, BacktestResult) else dict(result)
    doc.pop("elapsed_seconds", None)
    return doc


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> BacktestResult:
    return run(tmp_path_factory.mktemp("baseline"))


def test_json_with_100_dollars_and_the_same_result_twice(
    baseline: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, CLI_ARGS)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["params"]["capital"] == "100" and doc["params"]["currency"] == "USD"
    for key in ("total_return", "sharpe", "max_drawdown", "win_rate", "tp1_hit_rate", "profit_factor", "trades"):
        assert key in doc["metrics"]
    assert doc["metrics"]["start_equity"] == pytest.approx(100.0)
    assert doc["trades"], "the rule policy traded in this window"
    first = doc["trades"][0]
    assert first["entry_time"].endswith("+00:00") and START.isoformat() <= first["entry_time"] < END.isoformat()
    assert 0 < first["qty"] < 1  # a fraction of a bitcoin: $100 is enough
    assert {"exit_time", "entry_price", "exit_price", "pnl", "reason"} <= set(first)
    assert doc["data_range"]["BTC/USD"]["bars"] == 5 * 24
    # The same backtest twice (the CLI in a fresh data dir, the API in another) gives the same result.
    assert comparable(doc) == comparable(baseline)
    # The trades' P&L add up to the equity's change (fees included in each trade's P&L).
    change = doc["metrics"]["end_equity"] - doc["metrics"]["start_equity"]
    assert sum(t["pnl"] for t in doc["trades"]) == pytest.approx(change, abs=0.01)


def test_the_future_is_never_seen(baseline: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every price from the window's end on is tripled: any peek past the clock changes the result."""

    def poisoned(path: str, stamp: tuple[int, int], timeframe: str, calendar: str) -> BarSeries:
        native = load_bar_file(path, timeframe=timeframe, calendar=calendar)
        late = native.index >= pd.Timestamp(POISON_FROM)
        assert late.any(), "the poison must reach bars the series has"
        prices = ["open", "high", "low", "close"]
        native.loc[late, prices] = native.loc[late, prices] * 3
        return BarSeries.build(native, parse_timeframe(timeframe), calendar)

    monkeypatch.setattr(replay_venue, "_load_series", poisoned)
    assert comparable(run(tmp_path)) == comparable(baseline)


def test_no_costs_charges_nothing(baseline: BacktestResult, tmp_path: Path) -> None:
    free = run(tmp_path, BacktestSpec(**{**SPEC.__dict__, "costs": False}))
    assert free.metrics["costs_paid"] == 0
    assert free.trades and all(t.fees == 0 for t in free.trades)
    assert baseline.metrics["costs_paid"] > 0
    assert sum(t.fees for t in baseline.trades) == pytest.approx(baseline.metrics["costs_paid"])


def test_a_signal_below_one_a_share_lot_is_skipped_with_the_reason(tmp_path: Path) -> None:
    # Moutai at about 2,000 CNY: one lot of 100 is 200,000 CNY, more than 100,000 can hold.
    spec = BacktestSpec(
        venue="replay-cn",
        symbols=("600519.SH",),
        timeframe="1d",
        start=datetime(2021, 1, 4, tzinfo=UTC),
        end=datetime(2021, 1, 9, tzinfo=UTC),
        policy="rules",
        capital=Decimal(100_000),
        profile="medium",
    )
    result = run(tmp_path, spec)
    assert result.trades == ()
    assert result.skipped, "the screen's candidates were refused, and said why"
    assert all("less than one lot (100)" in s["reason"] for s in result.skipped)
    assert result.calendar == "XSHG" and result.metrics["periods_per_year"] == 243


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "DOGE/USD"], "DOGE/USD"),
        (["--symbols", "BTC/USD,ETH/USDT"], "one currency"),
        (["--param", "fast"], "NAME=NUMBER"),
        (["--from", "2021-07-05", "--to", "2021-07-01"], "--to 2021-07-01 must be after --from 2021-07-05"),
        (["--from", "2021-07-05T06:30", "--to", "2021-07-05T06:00"], "--to 2021-07-05 06:00 UTC must be after"),
        (["--venue", "nowhere"], "valid venues: replay-crypto"),
        (["--policy", "magic"], "rules, llm, ml, sma_cross"),
        (["--capital", "-5"], "above zero"),
        (["--capital", "1e21"], "at most 1,000,000,000,000 (one trillion)"),
        (["--capital", "1e30", "--policy", "sma_cross"], "at most 1,000,000,000,000 (one trillion)"),
        (["--capital", "1,000"], "'1,000' is not a number; write it plainly, e.g. 1000 or 0.5"),
        (["--capital", "nan"], "is not a number"),
        (["--timeframe", "7h"], "7h"),
        (["--purge-bars", "24"], "--purge-bars and --embargo-bars are for --walk-forward K"),
        (["--symbols", "BTC/USD, BTC/USD"], "names a symbol twice"),
        (
            ["--report", "/proc/no-such/x.html"],
            "cannot write /proc/no-such: No such file or directory; name a file in a folder you can write",
        ),
        (
            ["--timeframe", "1w"],
            "--timeframe 1w: scans run at most once a day; use one of 1m, 5m, 15m, 30m, 1h, 4h, 1d",
        ),
        (["--timeframe", "1w", "--walk-forward", "3"], "--timeframe 1w: scans run at most once a day"),
        (
            ["--timeframe", "1m"],
            "--timeframe 1m: BTC/USD on replay-crypto has no bars that fine; use one of 1h, 4h, 1d",
        ),
        (["--from", "2024-01-01", "--to", "2024-01-05"], "has bars from 2021-01-01 06:00 to 2022-01-01 00:00 UTC"),
        (["--policy", "rules", "--param", "fast=10"], "--param is for --policy sma_cross"),
    ],
)
def test_bad_input_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path))
    base = dict(zip(CLI_ARGS[1::2], CLI_ARGS[2::2], strict=False))
    base.update(dict(zip(args[::2], args[1::2], strict=False)))
    flat = ["backtest"] + [x for kv in base.items() for x in kv if x != "--json"]
    result = CliRunner().invoke(app, flat)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_capital_beyond_a_trillion_is_refused_by_the_api_too(tmp_path: Path) -> None:
    with pytest.raises(BacktestError, match="at most 1,000,000,000,000"):
        run(tmp_path, BacktestSpec(**{**SPEC.__dict__, "capital": Decimal("1e21")}))


def test_too_many_folds_are_said_in_the_command_s_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path))
    args = [*CLI_ARGS[:-5], "--to", "2021-07-02", "--walk-forward", "100", "--purge-bars", "2", "--embargo-bars", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "min_train" not in result.output
    assert "48 scan bars" in result.output
    assert "too few for 100 folds with --purge-bars 2 and --embargo-bars 1" in result.output
    assert "at least 201 scan bars" in result.output


def test_unknown_symbol_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownSymbolError, match="BTC/USD"):
        run(tmp_path, BacktestSpec(**{**SPEC.__dict__, "symbols": ("XRP/USD",)}))
    with pytest.raises(BacktestError, match="--symbols is empty"):
        run(tmp_path, BacktestSpec(**{**SPEC.__dict__, "symbols": ()}))


def test_walk_forward_folds_in_time_order_and_the_out_of_sample_total(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    spec = BacktestSpec(**{**SPEC.__dict__, "end": datetime(2021, 7, 4, tzinfo=UTC)})
    doc = asyncio.run(walk_forward_backtest(settings, spec, 3, purge=4, embargo=6))
    folds = doc["walk_forward"]["folds"]
    assert [f["index"] for f in folds] == [0, 1, 2]
    hour = timedelta(hours=1)
    tests = [(datetime.fromisoformat(f["test"][0]), datetime.fromisoformat(f["test"][1])) for f in folds]
    for (_, end_a), (start_b, _) in itertools.pairwise(tests):
        assert start_b - end_a == 6 * hour  # the embargo: six scan bars no fold tests
    for fold, (start, _) in zip(folds, tests, strict=True):
        assert start - datetime.fromisoformat(fold["train"][1]) == 4 * hour  # the purge
    assert tests[0][0] >= START + 4 * hour and tests[-1][1] == spec.end
    # The out-of-sample return chains the folds' returns, each fold starting from the same capital.
    chained = math.prod(1 + f["metrics"]["total_return"] for f in folds) - 1
    assert doc["metrics"]["total_return"] == pytest.approx(chained)
    assert doc["metrics"]["trades"] == sum(f["metrics"]["trades"] for f in folds) == len(doc["trades"])
    for trade in doc["trades"]:  # every trade opened inside a test window
        entry = datetime.fromisoformat(trade["entry_time"])
        assert any(start <= entry < end for start, end in tests)
    text = walk_forward_text(doc)
    first = datetime.fromisoformat(folds[0]["test"][0])
    assert f"fold 0: test {first:%Y-%m-%d %H:%M} UTC -> " in text
    assert "+00:00" not in text and "T0" not in text, text
    with pytest.raises(BacktestError, match="too few for 5 folds"):
        asyncio.run(walk_forward_backtest(settings, BacktestSpec(**{**SPEC.__dict__, "end": START + 4 * hour}), 5))


def test_dates_read_as_the_user_typed_them(baseline: BacktestResult) -> None:
    # SPEC ends at 2021-07-06 00:00, which is what --to 2021-07-05 (inclusive) becomes.
    text = result_text(baseline)
    assert text.startswith("backtest replay-crypto BTC/USD 1h 2021-07-01 -> 2021-07-05 policy"), text
    assert "2021-07-01 -> 2021-07-05 (" in chat_text(baseline)
    assert "+00:00" not in text and "2021-07-06" not in text.splitlines()[0]
    assert "bars 2021-07-01 " in text and " UTC -> 2021-07-05 23:00 UTC" in text, text
    assert window_text(datetime(2021, 7, 1, 6, 30, tzinfo=UTC), datetime(2021, 7, 2, 9, tzinfo=UTC)) == (
        "2021-07-01 06:30 UTC",
        "2021-07-02 09:00 UTC",
    )


def test_sma_cross_has_no_tp1_rate_and_prices_print_in_full(tmp_path: Path) -> None:
    spec = BacktestSpec(**{**SPEC.__dict__, "policy": "sma_cross", "params": {"fast": 3, "slow": 8}})
    result = run(tmp_path, spec)
    assert result.trades and result.metrics["tp1_hit_rate"] is None
    assert "TP1 hit rate n/a" in result_text(result) and "TP1 hit rate n/a" in chat_text(result)
    for trade, line in zip(result.trades, [x for x in result_text(result).splitlines() if " @ " in x], strict=True):
        price = line.split(" @ ")[1].split()[0]
        assert Decimal(price) == Decimal(repr(trade.entry_price)) and len(price.split(".")[1]) >= 2, line


def test_a_param_given_twice_is_refused() -> None:
    # The last one winning would run a strategy the user did not read in their own command.
    with pytest.raises(BacktestError, match=r"--param fast is given twice \(10 and 20\): give it once"):
        parse_params(["fast=10", "slow=30", "fast=20"])
