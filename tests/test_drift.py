"""Drift: PSI and KS on hand-checked samples (tools/drift.py); the daily check of the promoted
model on the replay venue's latest bars, once a day, naming the drifted features (bot/drift.py);
the LLM's model_score tool (agent/llm/tools.py)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agent.llm.tools import Toolbox
from agent.ml_policy import ML_LOOKBACK_BARS
from bot.drift import DRIFT_KEY, daily_drift, drift_check
from bot.ml import registry
from bot.services import Services, open_services
from bot.settings import load_settings
from tests.test_graph import CRYPTO, ETH
from tests.test_ml_policy import small_eth_model
from tools.drift import PROBABILITY, REFERENCE_POINTS, DriftThresholds, drift_report, ks, psi, reference
from tools.features import build_features
from tools.ml import TrainedModel
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

NOW = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)


# --- PSI and KS ------------------------------------------------------------------------------------


def test_identical_samples_have_psi_zero_and_ks_zero() -> None:
    sample = np.random.default_rng(1).normal(size=1000)
    assert psi(sample, sample) == 0.0
    assert ks(sample, sample) == (0.0, 1.0)


def test_psi_by_hand_on_deciles_of_0_to_99() -> None:
    # Training deciles cut 0..99 into ten bins of 10% each; live: half in the first bin, half in
    # the last, none between (each empty bin counts as 0.0001):
    # 2 x (0.5 - 0.1) ln(5) + 8 x (0.0001 - 0.1) ln(0.0001 / 0.1)
    live = [1.0] * 50 + [98.0] * 50
    expected = 2 * 0.4 * math.log(5) + 8 * (0.0001 - 0.1) * math.log(0.0001 / 0.1)
    assert psi(np.arange(100.0), live) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(6.8082, abs=1e-4)


def test_a_shifted_normal_drifts_and_a_fresh_sample_does_not() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=5000)
    assert psi(base, rng.normal(size=2000)) < 0.02
    shifted = rng.normal(loc=0.5, size=2000)  # half a standard deviation
    assert psi(base, shifted) > 0.2
    assert ks(base, shifted)[1] < 1e-10


def test_known_ks_values() -> None:
    # Disjoint samples of 3: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1.
    assert ks([1, 2, 3], [4, 5, 6]) == pytest.approx((1.0, 0.1))
    # [1..4] vs [3..6]: the ECDFs differ by at most 2/4 (at 2), exact p = 0.771428... (scipy's exact).
    statistic, p_value = ks([1, 2, 3, 4], [3, 4, 5, 6])
    assert statistic == 0.5 and p_value == pytest.approx(0.7714, abs=1e-4)


def test_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="finite values in both"):
        psi([], [1.0])
    with pytest.raises(ValueError, match="finite values in both"):
        ks([float("nan")], [1.0])
    with pytest.raises(ValueError, match="PSI threshold"):
        DriftThresholds(psi=0)


def test_the_report_names_the_shifted_feature_only() -> None:
    rng = np.random.default_rng(3)
    train_a, train_b = rng.normal(size=3000), rng.uniform(size=3000)
    stored = reference({"a": train_a, "b": train_b}, rng.uniform(0.3, 0.6, size=3000))
    assert len(stored["features"]["a"]) == REFERENCE_POINTS
    assert json.loads(json.dumps(stored)) == stored  # fits in the JSON card
    live = {"a": rng.normal(size=500), "b": rng.uniform(0.5, 1.5, size=500)}
    report = drift_report("m1", stored, live, rng.uniform(0.3, 0.6, size=500))
    assert [r.name for r in report.drifted] == ["b"]
    assert {r.name for r in report.rows} == {"a", "b", PROBABILITY}
    assert "model m1: drift over the last 500 bars" in report.text() and "b (PSI " in report.text()
    calm = drift_report("m1", stored, {"a": live["a"]}, rng.uniform(0.3, 0.6, size=500))
    assert calm.drifted == [] and calm.skipped == ["b"] and calm.text() == "model m1: no drift over the last 500 bars"


# --- the daily check and model_score on the replay venue --------------------------------------------


@pytest.fixture(scope="module")
def eth_model() -> TrainedModel:
    """A small model on ETH/USDT 1h, 2021-01-01 -> 2021-06-30, its card as `tradeops train` writes it."""
    return small_eth_model({"id": "eth-drift", "timeframe": "1h", "symbols": [ETH]})


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(data_dir=tmp_path / "data")
    async with open_services(settings, clock=SimulatedClock(NOW)) as opened:
        yield opened


def test_training_stores_the_window_reference_in_the_card(eth_model: TrainedModel) -> None:
    stored = eth_model.card["drift_reference"]
    assert set(stored["features"]) == set(eth_model.features)
    probability = stored[PROBABILITY]
    assert len(probability) == REFERENCE_POINTS and probability == sorted(probability)
    assert 0 <= probability[0] <= probability[-1] <= 1


async def test_the_daily_check_names_drifted_features_once_a_day(
    services: Services, eth_model: TrainedModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.drift")
    assert await daily_drift(services) is None  # no model promoted: logged, nothing pushed
    assert "drift check skipped: no model is promoted" in caplog.text
    services.signals.set_value(DRIFT_KEY, {"day": "2021-07-05"}, at=NOW)  # yesterday's check
    # The training window of one feature moved far away: that feature drifts, by name.
    card = json.loads(json.dumps(eth_model.card))
    moved = eth_model.features[0]
    card["drift_reference"]["features"][moved] = [v + 1000 for v in card["drift_reference"]["features"][moved]]
    reg = registry(services.settings)
    reg.save(TrainedModel(card, eth_model.boosters, eth_model.calibrator))
    reg.promote("eth-drift")
    reports = await drift_check(services)
    assert [(r.venue, r.symbol) for r in reports] == [(CRYPTO, ETH)]
    report = reports[0].report
    assert report.live_rows == services.settings.drift_bars
    assert moved in [r.name for r in report.drifted]
    notice = await daily_drift(services)
    assert notice is not None and notice.startswith(f"{CRYPTO} {ETH}: model eth-drift: drift over the last 500 bars")
    assert f"{moved} (PSI " in notice
    assert services.signals.get_value(DRIFT_KEY)["day"] == "2021-07-06"  # type: ignore[index]
    assert await daily_drift(services) is None  # once a day: the stored day holds across a restart


async def test_model_score_tool(services: Services, eth_model: TrainedModel) -> None:
    toolbox = Toolbox(services.deps, CRYPTO, ETH, "1h")
    assert "model_score" in toolbox.tools
    answer = await toolbox.call("model_score", "{}")
    assert answer == {
        "error": "no model score: no model is promoted: train one (tradeops train) and `tradeops models promote ID`"
    }
    reg = registry(services.settings)
    reg.save(eth_model)
    reg.promote("eth-drift")
    answer = await toolbox.call("model_score", "{}")
    bars = await services.venues[CRYPTO].bars(ETH, "1h", limit=ML_LOOKBACK_BARS)
    expected = float(eth_model.predict_proba(build_features(bars, "1h").iloc[[-1]])[0])
    assert answer["model_id"] == "eth-drift" and answer["symbol"] == ETH and answer["timeframe"] == "1h"
    assert answer["probability"] == round(expected, 3) and answer["threshold"] == 0.55
    assert len(answer["top_contributions"]) == 3 and set(answer["top_contributions"]) <= set(eth_model.features)
    assert bars["close_time"].iloc[-1] <= NOW and NOW - bars["close_time"].iloc[-1] < timedelta(hours=1)
    assert (await toolbox.call("model_score", '{"symbol": "NOPE"}'))["error"].startswith("unknown symbol 'NOPE'")
