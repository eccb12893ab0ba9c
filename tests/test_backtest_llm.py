"""LLM backtests through the response cache, and the training cut-off leak flag.

The "model" is respx behind the real openai SDK: a pure function of the request (it asks for the
account once, then buys with a stop two ATRs below the last price, or holds when RSI is above 70),
so what it answers depends on nothing but what it is asked. A first run in read-write mode pays
for its calls and stores them in the data dir's database; a second, read-only, makes no HTTP call
and gives the same result; a read-only run over a window the cache has not seen abstains on each
miss and counts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import Engine
from typer.testing import CliRunner

from agent.llm.cutoff import SETTING, TRAINING_CUTOFFS, leak_check, training_cutoff
from bot.backtest import backtest, result_text, walk_forward_backtest, walk_forward_text
from bot.cli import app
from bot.settings import Settings, load_settings
from bot.wiring import open_database
from scheduler.backtest import metrics
from scheduler.backtest.engine import BacktestError, BacktestResult, BacktestSpec
from scheduler.backtest.report import report_html
from storage.llm import LLMCache
from tests.support import restored_logging

pytestmark = pytest.mark.usefixtures("hermetic")

BASE = "https://llm.backtest.example/v1"
KEY = "sk-test-backtest-0123456789abcdef"
MODEL = "gpt-4o-mini"
# Three A-shares on daily bars over two months of 2021: scans where two or three are candidates at
# once, so the prompts of one scan depend on the order their decisions land in.
SPEC = BacktestSpec(
    venue="replay-cn",
    symbols=("600519.SH", "601318.SH", "000001.SZ"),
    timeframe="1d",
    start=datetime(2021, 3, 1, tzinfo=UTC),
    end=datetime(2021, 5, 1, tzinfo=UTC),
    policy="llm",
    capital=Decimal(1_000_000),
    profile="medium",
)

LONGER = BacktestSpec(**{**SPEC.__dict__, "end": datetime(2021, 5, 20, tzinfo=UTC)})


def model_answer(request: httpx.Request) -> httpx.Response:
    """The scripted model: get_account first (when tools are offered), then a decision from the
    facts in the user message."""
    body = json.loads(request.content)
    messages = body["messages"]
    if body.get("tools") and not any(m["role"] == "tool" for m in messages):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_account", "arguments": "{}"}}
            ],
        }
    else:
        facts = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
        last = facts["last_price"]
        indicators = facts["indicators"]
        atr = indicators.get("ATRr_14_1d") or last * 0.02
        if indicators.get("RSI_14_1d", 50) > 70 or facts["position"]["qty"] != "0":
            answer = {"action": "HOLD", "confidence": 0.3, "entry": None, "stop": None, "take_profits": []}
        else:
            stop = round(last - 2 * atr, 2)
            targets = [round(last + k * (last - stop), 2) for k in (1.5, 2.5)]
            answer = {"action": "BUY", "confidence": 0.8, "entry": last, "stop": stop, "take_profits": targets}
        answer |= {"horizon_bars": 10, "reason": f"last {last}, ATR {atr:.4g}", "risk_notes": []}
        message = {"role": "assistant", "content": json.dumps(answer)}
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-backtest",
            "object": "chat.completion",
            "created": 1614556800,
            "model": MODEL,
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050},
        },
    )


def llm_settings(data_dir: Path, cache: str, **more: Any) -> Settings:
    return load_settings(
        data_dir=data_dir, llm_base_url=BASE, llm_api_key=KEY, llm_model=MODEL, llm_cache=cache, **more
    )


def run(settings: Settings, spec: BacktestSpec = SPEC, bodies: list[str] | None = None) -> tuple[BacktestResult, int]:
    """The backtest with respx as the endpoint; returns the result and the HTTP calls made (their
    bodies go to ``bodies``)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if bodies is not None:
            bodies.append(request.content.decode())
        return model_answer(request)

    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        route = router.post("/chat/completions").mock(side_effect=answer)
        result = asyncio.run(backtest(settings, spec))
        return result, route.call_count


def without_llm(result: BacktestResult) -> dict[str, Any]:
    doc = result.to_json()
    doc.pop("llm")
    return doc


def cache_size(settings: Settings) -> int:
    engine: Engine = open_database(settings, one_shot=True)
    try:
        return LLMCache(engine).size()
    finally:
        engine.dispose()


SENT: list[str] = []  # the bodies of the first run's requests


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BacktestResult, int]:
    """A read-write run in a fresh data dir: pays for its calls and stores them."""
    data_dir = tmp_path_factory.mktemp("llm-cache")
    # Module-scoped, so it runs before the "hermetic" fixture: as hermetic on its own.
    with pytest.MonkeyPatch.context() as patch, restored_logging():
        for name in [n for n in os.environ if n.startswith(("TRADEOPS_", "OPENAI_"))]:
            patch.delenv(name)
        patch.chdir(data_dir)
        result, calls = run(llm_settings(data_dir, "read-write"), bodies=SENT)
    return data_dir, result, calls


def test_the_requests_hold_nothing_that_changes_between_runs(first_run: tuple[Path, BacktestResult, int]) -> None:
    """The cache key is the request: no signal id, no wall-clock time, only point-in-time facts."""
    _, result, calls = first_run
    assert len(SENT) == calls
    ids = {t.signal_id for t in result.trades}
    assert ids and not any(i in body for i in ids for body in SENT)
    today = datetime.now(UTC)
    for stamp in (today.strftime("%Y-%m-%d"), today.strftime("%Y-%m-%dT%H")):
        assert not any(stamp in body for body in SENT)
    # Decisions happen at simulated times inside the window, and the prompt says which.
    users = [json.loads(m["content"]) for b in SENT for m in json.loads(b)["messages"] if m["role"] == "user"]
    assert all("2021-03-01" <= u["now_utc"] < "2021-05-01" for u in users)


def test_a_read_only_rerun_makes_no_call_and_gives_the_same_result(
    first_run: tuple[Path, BacktestResult, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, first, calls = first_run
    llm = first.llm
    assert llm is not None
    assert calls > 0 and llm["requests_sent"] == calls and llm["answers_from_cache"] == 0
    assert first.trades, "the scripted model bought, and the backtest traded"
    assert first.signals.get("abstained", 0) == 0
    # Every request the run sent is in the data dir's database, not in the backtest's throwaway one.
    assert cache_size(llm_settings(data_dir, "read-write")) == calls
    assert Decimal(llm["cost_usd"]) > 0

    # The same backtest, read-only, through the CLI: no HTTP call at all, the same result.
    for name, value in {
        "TRADEOPS_DATA_DIR": str(data_dir),
        "TRADEOPS_LLM_BASE_URL": BASE,
        "TRADEOPS_LLM_API_KEY": KEY,
        "TRADEOPS_LLM_MODEL": MODEL,
        "TRADEOPS_LLM_CACHE": "read-only",
    }.items():
        monkeypatch.setenv(name, value)
    args = ["backtest", "--venue", SPEC.venue, "--symbols", ",".join(SPEC.symbols), "--timeframe", "1d",
            "--from", "2021-03-01", "--to", "2021-04-30", "--policy", "llm", "--capital", "1000000",
            "--json"]  # fmt: skip
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        route = router.post("/chat/completions").mock(side_effect=model_answer)
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0, out.output
        assert route.call_count == 0
    doc = json.loads(out.stdout)
    replay = doc.pop("llm")
    doc.pop("elapsed_seconds")
    assert doc == without_llm(first)
    assert replay["requests_sent"] == 0 and replay["cache_misses"] == 0
    assert replay["answers_from_cache"] == calls
    assert replay["cost_usd"] == "0"


def test_a_cache_miss_in_read_only_mode_abstains_and_is_counted(first_run: tuple[Path, BacktestResult, int]) -> None:
    data_dir, first, _ = first_run
    # Three weeks more than the cache holds: those decisions were never answered.
    result, calls = run(llm_settings(data_dir, "read-only"), LONGER)
    llm = result.llm
    assert calls == 0
    assert llm is not None and llm["requests_sent"] == 0
    assert llm["cache_misses"] > 0 and llm["abstained_on_cache_miss"] == llm["cache_misses"]
    assert result.signals["abstained"] == llm["abstained_on_cache_miss"]
    assert llm["answers_from_cache"] > 0  # the first two months still replay
    # Up to the first run's end the trades are the same ones (decided from the cache).
    early = [t for t in result.trades if t.entry_time < SPEC.end]
    assert [(t.signal_id, t.entry_time) for t in early] == [(t.signal_id, t.entry_time) for t in first.trades]
    text = result_text(result)
    assert f"{llm['cache_misses']} cache misses ({llm['cache_misses']} decisions abstained on them)" in text


def test_a_walk_forward_counts_the_folds_calls_and_flags_the_window(
    first_run: tuple[Path, BacktestResult, int],
) -> None:
    data_dir, _, _ = first_run
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        route = router.post("/chat/completions").mock(side_effect=model_answer)
        doc = asyncio.run(walk_forward_backtest(llm_settings(data_dir, "read-only"), SPEC, 2))
        assert route.call_count == 0
    llm = doc["llm"]
    # Fold 0 starts where the first run started, with the same capital: the same questions, answered
    # from the cache. Fold 1 starts afresh mid-window: another account, other questions, misses.
    assert llm["requests_sent"] == 0 and llm["answers_from_cache"] > 0 and llm["cache_misses"] > 0
    assert doc["possible_leak"] is True and doc["possible_leak_reason"].startswith("possibly leaked")
    text = walk_forward_text(doc)
    assert f"{llm['cache_misses']} cache misses" in text and "WARNING possibly leaked" in text


def test_the_llm_policy_without_an_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BacktestError, match="--policy llm needs an LLM endpoint: set TRADEOPS_LLM_MODEL"):
        asyncio.run(backtest(load_settings(data_dir=tmp_path), SPEC))


# --- the training cut-off -------------------------------------------------------------------------


def test_a_window_before_the_cutoff_is_flagged_in_the_summary_json_and_report(
    first_run: tuple[Path, BacktestResult, int],
) -> None:
    _, result, _ = first_run
    # gpt-4o-mini was trained on data up to October 2023; this window is in 2021.
    assert result.possible_leak
    reason = result.possible_leak_reason
    assert reason.startswith("possibly leaked: the model may have seen this period")
    assert "2023-10-01" in reason and "the whole window" in reason
    doc = result.to_json()
    assert doc["possible_leak"] is True and doc["possible_leak_reason"] == reason
    assert doc["llm"]["training_cutoff"] == "2023-10-01"
    assert doc["llm"]["training_cutoff_source"] == "https://platform.openai.com/docs/models/gpt-4o-mini"
    assert f"WARNING {reason}" in result_text(result)
    page = report_html(result)
    assert 'id="possible-leak"' in page and "possibly leaked: the model may have seen this period" in page


def test_a_rules_backtest_is_never_flagged() -> None:
    summary = metrics.summary((), (), periods=243, start=SPEC.start, end=SPEC.end, costs_paid=0.0)
    result = BacktestResult(dataclasses.replace(SPEC, policy="rules"), "CNY", "XSHG", summary, (), (), (), {}, {})
    assert result.to_json()["possible_leak"] is False and result.to_json()["possible_leak_reason"] is None
    assert 'id="possible-leak"' not in report_html(result)


def test_leak_check_rules() -> None:
    day = datetime(2023, 10, 1, tzinfo=UTC)
    before, after = datetime(2023, 6, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    # Wholly before, partly before, on the cut-off day (seen), the day after (not seen).
    assert "the whole window" in leak_check(MODEL, before, datetime(2023, 7, 1, tzinfo=UTC)).reason
    assert "part of the window" in leak_check(MODEL, before, after).reason
    assert leak_check(MODEL, day, after).possible_leak
    unseen = leak_check(MODEL, datetime(2023, 10, 2, tzinfo=UTC), after)
    assert not unseen.possible_leak and unseen.reason == "" and unseen.cutoff == date(2023, 10, 1)
    # A dated snapshot takes its family's cut-off, the longest family name first.
    assert training_cutoff("gpt-4o-mini-2024-07-18") == TRAINING_CUTOFFS["gpt-4o-mini"]
    assert training_cutoff("gpt-4.1-2025-04-14") == TRAINING_CUTOFFS["gpt-4.1"]
    assert training_cutoff("GPT-4O") == TRAINING_CUTOFFS["gpt-4o"]
    # A model nobody published a cut-off for is flagged, and told how to say it.
    unknown = leak_check("deepseek-chat", after, after.replace(month=3))
    assert unknown.possible_leak and unknown.cutoff is None and f"set {SETTING}=YYYY-MM-DD" in unknown.reason
    # The setting overrides the table, and its name is the source.
    told = leak_check("deepseek-chat", after, after.replace(month=3), date(2024, 1, 15))
    assert not told.possible_leak and told.source == SETTING


def test_the_setting_reaches_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOPS_LLM_TRAINING_CUTOFF", "2024-06-01")
    assert load_settings(data_dir=tmp_path).llm_config.training_cutoff == date(2024, 6, 1)
    monkeypatch.setenv("TRADEOPS_LLM_TRAINING_CUTOFF", "")  # as .env.example writes it: unset
    assert load_settings(data_dir=tmp_path).llm_config.training_cutoff is None
    monkeypatch.setenv("TRADEOPS_LLM_TRAINING_CUTOFF", "June 2024")
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path))
    out = CliRunner().invoke(app, ["backtest", "--venue", "replay-cn", "--symbols", "600519.SH", "--timeframe", "1d",
                                   "--from", "2021-03-01", "--to", "2021-03-05"])  # fmt: skip
    assert out.exit_code == 2 and "TRADEOPS_LLM_TRAINING_CUTOFF: Input should be a valid date" in out.output
