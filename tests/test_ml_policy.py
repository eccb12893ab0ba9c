"""MLPolicy through the real graph (replay venue, paper broker, checkpointer): a score at or above
the threshold reaches a pending card carrying the model id, probability and top contributions; a
score below holds; a missing, corrupt or mismatched model abstains with the reason."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from agent.ml_policy import ML_LOOKBACK_BARS, MLPolicy
from bot.cli import app
from bot.doctor import ml_policy_check
from bot.settings import Settings
from tests.test_graph import CRYPTO, ETH, eth_clock, rig
from tools.features import build_features
from tools.labels import BarrierPlan, RoundTripCosts
from tools.ml import Calibrator, TrainConfig, TrainedModel, make_dataset, train
from tools.model_registry import ModelRegistry
from venues.clock import SimulatedClock
from venues.replay.venue import ReplayVenue

pytestmark = pytest.mark.usefixtures("hermetic")

PLAN = BarrierPlan()


@pytest.fixture(scope="module")
def eth_model() -> TrainedModel:
    """A small model on ETH/USDT 1h, 2021-01-01 -> 2021-06-30 (before the graph tests' 2021-07-06),
    with a threshold low enough that it signals."""
    return small_eth_model({"id": "eth-test", "timeframe": "1h"}, threshold=0.05)


def small_eth_model(card: dict[str, Any], **config: Any) -> TrainedModel:
    """A model on ETH/USDT 1h bars of 2021-01-01 -> 2021-06-30, small enough to train in a test
    (two folds, 20 trees of 7 leaves; ``config`` changes any TrainConfig field), with ``card``."""
    venue = ReplayVenue("crypto", SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    series = venue.series(ETH)
    bars = series.frame(series.timeframe).bars.loc[:"2021-06-30"]
    data = make_dataset(ETH, bars, "1h", plan=PLAN, costs=RoundTripCosts(venue.instrument_of(ETH), Decimal(5)))
    return train([data], TrainConfig(folds=2, n_estimators=20, num_leaves=7, **config), PLAN, card=card)


def with_threshold(model: TrainedModel, threshold: float) -> TrainedModel:
    return dataclasses.replace(model, card={**model.card, "threshold": threshold})


async def test_a_score_above_the_threshold_reaches_a_pending_buy_card(
    engine: Engine, db_url: str, eth_model: TrainedModel
) -> None:
    # The real boosters with a calibration curve lifted into 0.7-0.9, so that the medium profile's
    # minimum confidence (0.60) lets the signal through to the card: the plumbing is under test here.
    lifted = dataclasses.replace(eth_model, calibrator=Calibrator((0.0, 1.0), (0.7, 0.9)))
    async with rig(db_url, eth_clock()) as app_:
        app_.deps.policy = MLPolicy(lambda: lifted, app_.deps)
        walk = await app_.runner.start(signal_id="ml1", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == "pending", walk
        card = walk.card
        assert card is not None and card["policy"] == "ml" and card["side"] == "BUY"
        # The probability is the model's on the bars the venue shows at that moment.
        bars = await app_.venues[CRYPTO].bars(ETH, "1h", limit=ML_LOOKBACK_BARS)
        expected = float(lifted.predict_proba(build_features(bars, "1h").iloc[[-1]])[0])
        assert card["confidence"] == round(expected, 2) >= 0.7
        reasons = " | ".join(card["reasons"])
        assert f"model eth-test: P(TP1 before the stop, net of costs) = {expected:.2f}" in reasons
        assert "top feature contributions to the long score (log-odds): " in reasons
        # The stop and TP1 are the labels' plan: 2 ATR below the entry, TP1 at 1.5 R.
        entry, stop = Decimal(card["entry"]), Decimal(card["stop"])
        atr = build_features(bars, "1h")["atr_pct"].iloc[-1] * float(bars["close"].iloc[-1])
        assert float(entry - stop) == pytest.approx(2 * atr, abs=0.02)
        assert float(Decimal(card["take_profits"][0]) - entry) == pytest.approx(1.5 * float(entry - stop), abs=0.02)
        assert await app_.next_nodes("ml1") == ("approve",)


async def test_the_risk_gate_judges_the_models_confidence(engine: Engine, db_url: str, eth_model: TrainedModel) -> None:
    async with rig(db_url, eth_clock()) as app_:
        app_.deps.policy = MLPolicy(lambda: eth_model, app_.deps)  # threshold 0.05: it proposes a BUY
        walk = await app_.runner.start(signal_id="ml0", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == "blocked" and walk.reason.startswith("confidence 0.")
        assert walk.reason.endswith("minimum 0.60") and walk.card is not None and walk.card["policy"] == "ml"


async def test_a_score_below_the_threshold_holds_with_the_probability(
    engine: Engine, db_url: str, eth_model: TrainedModel
) -> None:
    async with rig(db_url, eth_clock()) as app_:
        app_.deps.policy = MLPolicy(lambda: with_threshold(eth_model, 0.99), app_.deps)
        walk = await app_.runner.start(signal_id="ml2", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == "hold", walk
        assert "below the threshold 0.99" in walk.reason and "model eth-test: P(" in walk.reason


async def test_a_missing_corrupt_or_mismatched_model_abstains_with_the_reason(
    engine: Engine, db_url: str, eth_model: TrainedModel, tmp_path: Path
) -> None:
    registry = ModelRegistry(tmp_path / "models")
    async with rig(db_url, eth_clock()) as app_:
        app_.deps.policy = MLPolicy(lambda: registry.load(None), app_.deps)
        walk = await app_.runner.start(signal_id="ml3", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == "abstained" and "ML model unavailable: no model is promoted" in walk.reason
        directory = registry.save(eth_model)
        registry.promote("eth-test")
        (directory / "lgbm.txt").write_text("garbage")
        walk = await app_.runner.start(signal_id="ml4", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == "abstained" and "lgbm.txt is corrupt" in walk.reason, walk
        app_.deps.policy = MLPolicy(lambda: eth_model, app_.deps)
        walk = await app_.runner.start(signal_id="ml5", venue=CRYPTO, symbol=ETH, timeframe="4h")
        assert walk.status == "abstained" and "was trained on 1h bars; this decision is on 4h" in walk.reason


def test_backtest_policy_ml_needs_a_model_and_runs_with_the_promoted_one(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    window = ["--venue", "replay-crypto", "--symbols", "ETH/USDT", "--timeframe", "1h"]
    result = runner.invoke(
        app, ["backtest", *window, "--from", "2021-07-05", "--to", "2021-07-05", "--policy", "ml", *data]
    )
    assert result.exit_code == 2 and "--policy ml: no model is promoted" in result.output
    demo = runner.invoke(app, ["demo", "--policy", "ml", "--days", "1", *data])
    assert demo.exit_code == 2 and "--policy ml needs a model that loads: no model is promoted" in demo.output
    settings = Settings(data_dir=tmp_path / "data", policy="ml", _env_file=None)  # type: ignore[call-arg]
    check = ml_policy_check(settings)
    assert not check.ok and "TRADEOPS_POLICY=ml, but no model is promoted" in check.detail
    trained = runner.invoke(
        app,
        [
            "train",
            *window,
            "--from",
            "2021-01-01",
            "--to",
            "2021-06-30",
            "--trees",
            "10",
            "--folds",
            "2",
            "--threshold",
            "0.05",
            "--json",
            *data,
        ],
    )
    assert trained.exit_code == 0, trained.output
    model_id = json.loads(trained.stdout)["id"]
    assert runner.invoke(app, ["models", "promote", model_id, *data]).exit_code == 0
    result = runner.invoke(
        app, ["backtest", *window, "--from", "2021-07-05", "--to", "2021-07-05", "--policy", "ml", "--json", *data]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["params"]["policy"] == "ml"
    assert doc["params"]["model"] == model_id and doc["possible_leak"] is False  # after its training window
    check = ml_policy_check(settings)
    assert check.ok and model_id in check.detail and "promoted" in check.detail
    in_sample = runner.invoke(
        app, ["backtest", *window, "--from", "2021-06-20", "--to", "2021-06-20", "--policy", "ml", "--json", *data]
    )
    leaked = json.loads(in_sample.stdout)
    assert leaked["possible_leak"] is True and "so these results are in sample" in leaked["possible_leak_reason"]
    assert sum(doc["signals"].values()) > 0, doc["signals"]
    # The model's calibrated probability is what the risk gate judged (under 0.60 on this model).
    assert any(s["reason"].startswith("confidence 0.") for s in doc["skipped"]), doc["skipped"]
    again = runner.invoke(
        app,
        [
            "backtest",
            *window,
            "--from",
            "2021-07-05",
            "--to",
            "2021-07-05",
            "--policy",
            "ml",
            "--model",
            model_id,
            "--json",
            *data,
        ],
    )
    assert again.exit_code == 0 and json.loads(again.stdout)["signals"] == doc["signals"]
    for extra, message in (
        (["--policy", "ml", "--model", "nope-1"], "--policy ml: no model 'nope-1'; known: " + model_id),
        (["--policy", "ml", "--model", "../x"], "is not a model id"),
        (["--policy", "rules", "--model", model_id], "--model is for --policy ml, not --policy rules"),
    ):
        result = runner.invoke(app, ["backtest", *window, "--from", "2021-07-05", "--to", "2021-07-05", *extra, *data])
        assert result.exit_code == 2 and message in result.output, result.output


def test_the_policys_window_scores_nearly_the_features_training_saw() -> None:
    """Training builds features over the whole history; the policy over its last ML_LOOKBACK_BARS.
    Where the windows start changes TA-Lib's EMAs a little: at most 0.1 (ATRs, RSI points) here."""
    venue = ReplayVenue("crypto", SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    series = venue.series(ETH)
    bars = series.frame(series.timeframe).bars
    full = build_features(bars, "1h")
    for end in range(ML_LOOKBACK_BARS + 500, len(bars), 1000):
        window = build_features(bars.iloc[end - ML_LOOKBACK_BARS : end], "1h").iloc[-1]
        gap = (window - full.iloc[end - 1]).abs()
        assert gap.max() < 0.1, gap[gap > 0.1]


@pytest.fixture(scope="module")
def two_sided() -> TrainedModel:
    """ETH/USDT 1h with its short side, 2021-01-01 -> 2021-06-30."""
    venue = ReplayVenue("crypto", SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    series = venue.series(ETH)
    bars = series.frame(series.timeframe).bars.loc[:"2021-06-30"]
    costs = RoundTripCosts(venue.instrument_of(ETH), Decimal(5))
    data = make_dataset(ETH, bars, "1h", plan=PLAN, costs=costs, sides=("long", "short"))
    config = TrainConfig(folds=2, n_estimators=20, num_leaves=7, sides=("long", "short"))
    return train([data], config, PLAN, card={"id": "eth-both", "timeframe": "1h"})


def sided(model: TrainedModel, long: tuple[float, float], short: tuple[float, float]) -> TrainedModel:
    """The real boosters of both sides with their calibration curves set to map into these ranges."""
    assert model.short is not None
    short_side = dataclasses.replace(model.short, calibrator=Calibrator((0.0, 1.0), short))
    return dataclasses.replace(model, calibrator=Calibrator((0.0, 1.0), long), short=short_side)


async def test_the_short_side_reaches_a_pending_short_card_on_the_perpetual(
    engine: Engine, db_url: str, two_sided: TrainedModel
) -> None:
    model = sided(two_sided, long=(0.1, 0.2), short=(0.7, 0.9))
    async with rig(db_url, eth_clock()) as app_:
        app_.deps.policy = MLPolicy(lambda: model, app_.deps)
        walk = await app_.runner.start(signal_id="mls1", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.status == "pending", walk
        card = walk.card
        assert card is not None and card["policy"] == "ml" and card["side"] == "SHORT"
        bars = await app_.venues[CRYPTO].bars(ETH, "1h", limit=ML_LOOKBACK_BARS)
        features = build_features(bars, "1h").iloc[[-1]]
        assert model.short is not None
        p_short, p_long = float(model.short.predict_proba(features)[0]), float(model.predict_proba(features)[0])
        assert card["confidence"] == round(p_short, 2) >= 0.7
        reasons = " | ".join(card["reasons"])
        assert f"= {p_long:.2f} long, {p_short:.2f} short; the short side is at or above the threshold" in reasons
        assert "top feature contributions to the short score (log-odds): " in reasons
        # The mirrored plan: the stop 2 ATR above the entry, TP1 1.5 R below it, targets descending.
        entry, stop = Decimal(card["entry"]), Decimal(card["stop"])
        targets = [Decimal(t) for t in card["take_profits"]]
        atr = features["atr_pct"].iloc[-1] * float(bars["close"].iloc[-1])
        assert float(stop - entry) == pytest.approx(2 * atr, abs=0.02)
        assert float(entry - targets[0]) == pytest.approx(1.5 * float(stop - entry), abs=0.02)
        assert targets == sorted(targets, reverse=True) and targets[-1] > 0
        assert card["risk_decision"] == "allow"
        assert await app_.next_nodes("mls1") == ("approve",)
        assert (await app_.runner.decide("mls1", "rejected", actor="telegram:1")).status == "rejected"
        # Both sides above the threshold: the more probable one wins.
        app_.deps.policy = MLPolicy(lambda: sided(two_sided, long=(0.8, 0.95), short=(0.7, 0.75)), app_.deps)
        walk = await app_.runner.start(signal_id="mls2", venue=CRYPTO, symbol=ETH, timeframe="1h")
        assert walk.card is not None and walk.card["side"] == "BUY"


async def test_the_short_side_is_not_scored_where_shorts_are_not_allowed(
    engine: Engine, db_url: str, two_sided: TrainedModel
) -> None:
    model = sided(two_sided, long=(0.1, 0.2), short=(0.7, 0.9))
    async with rig(db_url, eth_clock()) as app_:
        app_.deps.policy = MLPolicy(lambda: model, app_.deps)
        walk = await app_.runner.start(signal_id="mls3", venue=CRYPTO, symbol="BTC/USD", timeframe="1h")
        assert walk.status == "hold", walk
        assert "short side not scored (BTC/USD cannot be sold short: spot crypto is never sold short" in walk.reason
        assert "below the threshold 0.55" in walk.reason
