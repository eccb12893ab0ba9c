"""The ML signal model: walk-forward with purge and embargo, calibration, reproducibility, model
files and the registry, and the `tradeops train` / `tradeops models` commands."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.ml import load_series, train_model
from bot.settings import load_settings
from storage.backfill import backfill
from storage.lake import BarsLake
from tests.lake_support import FlakySource
from tools.labels import BarrierPlan, RoundTripCosts
from tools.ml import Calibrator, SymbolData, TrainConfig, TrainedModel, expected_calibration_error, make_dataset, train
from tools.model_registry import ModelRegistry, RegistryError
from venues.clock import SimulatedClock
from venues.replay.venue import ReplayVenue

pytestmark = pytest.mark.usefixtures("hermetic")

PLAN = BarrierPlan(horizon_bars=24)


SMALL = TrainConfig(model="lgbm", folds=3, n_estimators=15, num_leaves=7, min_child_samples=20)


@pytest.fixture(scope="module")
def btc() -> SymbolData:
    venue = ReplayVenue("crypto", SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    series = venue.series("BTC/USD")
    bars = series.frame(series.timeframe).bars.loc[:"2021-03-31"]
    costs = RoundTripCosts(venue.instrument_of("BTC/USD"), Decimal(5))
    return make_dataset("BTC/USD", bars, "1h", plan=PLAN, costs=costs, calendar="24/7")


def fit(data: SymbolData, config: TrainConfig = SMALL) -> TrainedModel:
    return train([data], config, PLAN, card={"id": "test-model"})


def test_folds_purge_and_embargo_by_the_label_horizon(btc: SymbolData) -> None:
    model = fit(btc)
    validation = model.card["validation"]
    assert (validation["purge_bars"], validation["embargo_bars"]) == (24, 24)
    index = btc.features.index
    position = {t.isoformat(): i for i, t in enumerate(index)}
    previous_test_end = None
    for fold in validation["fold_metrics"]:
        windows = fold["windows"]["BTC/USD"]
        train_end, test_start = position[windows["train"][1]], position[windows["test"][0]]
        # The last training bar's label looks 24 bars ahead: it must end before the test window.
        assert train_end + PLAN.horizon_bars < test_start
        assert test_start - train_end - 1 == 24
        if previous_test_end is not None:
            assert test_start - previous_test_end - 1 == 24  # the embargo after the previous test window
        previous_test_end = position[windows["test"][1]]
    assert validation["fold_metrics"][0]["log_loss"] is None  # nothing before fold 0 to calibrate on
    assert all(f["ece"] is not None for f in validation["fold_metrics"][1:])
    assert sum(r["count"] for r in validation["reliability"]) == validation["out_of_sample"]["test_rows"]


def test_a_fixed_seed_trains_to_identical_predictions(btc: SymbolData) -> None:
    for kind in ("lgbm", "xgb", "ensemble"):
        config = TrainConfig(model=kind, folds=2, n_estimators=10, num_leaves=7, min_child_samples=20)
        first, second = fit(btc, config), fit(btc, config)
        np.testing.assert_array_equal(first.predict_proba(btc.features), second.predict_proba(btc.features))
        assert first.card["validation"] == second.card["validation"]
    other = fit(btc, TrainConfig(model="lgbm", folds=2, n_estimators=10, num_leaves=7, seed=8, min_child_samples=20))
    assert not np.array_equal(
        other.raw_proba(btc.features),
        fit(btc, TrainConfig(model="lgbm", folds=2, n_estimators=10, num_leaves=7, min_child_samples=20)).raw_proba(
            btc.features
        ),
    )


def test_calibration_recovers_known_probabilities() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.05, 0.95, 40_000)
    labels = (rng.uniform(size=truth.size) < truth).astype(float)
    raw = truth**3  # a monotone but badly calibrated score
    assert expected_calibration_error(raw, labels) > 0.15
    calibrator = Calibrator.fit(raw[:20_000], labels[:20_000])
    calibrated = calibrator.apply(raw[20_000:])
    assert np.mean(np.abs(calibrated - truth[20_000:])) < 0.03
    assert expected_calibration_error(calibrated, labels[20_000:]) < 0.02
    assert Calibrator.fit(raw[:10], np.zeros(10)).apply(np.array([0.3])) == pytest.approx([0.3])  # one class: identity


def test_saved_model_loads_to_the_same_predictions_and_corruption_is_a_clear_error(
    btc: SymbolData, tmp_path: Path
) -> None:
    model = train(
        [btc], TrainConfig(model="ensemble", folds=2, n_estimators=10, num_leaves=7), PLAN, card={"id": "m-1"}
    )
    registry = ModelRegistry(tmp_path / "models")
    directory = registry.save(model)
    loaded = registry.load("m-1")
    np.testing.assert_allclose(loaded.predict_proba(btc.features), model.predict_proba(btc.features), rtol=1e-6)
    top = loaded.top_contributions(btc.features.iloc[-200:])
    assert len(top) == 3 and all(name in model.features for name, _ in top)
    with pytest.raises(RegistryError, match="already exists"):
        registry.save(model)
    original = (directory / "lgbm.txt").read_text()
    (directory / "lgbm.txt").write_text(original.replace("tree", "tr3e", 1))
    with pytest.raises(RegistryError, match=r"lgbm.txt is corrupt: its sha256 differs"):
        registry.load("m-1")
    (directory / "lgbm.txt").write_text(original)
    assert registry.load("m-1").id == "m-1"
    (directory / "xgb.json").unlink()
    with pytest.raises(RegistryError, match=r"xgb.json cannot be read"):
        registry.load("m-1")
    (directory / "card.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"card.json cannot be read"):
        registry.load("m-1")


def test_registry_promote_rollback_and_bad_ids(btc: SymbolData, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    config = TrainConfig(folds=2, n_estimators=5, num_leaves=7)
    for name in ("a-1", "b-2", "c-3"):
        registry.save(train([btc], config, PLAN, card={"id": name, "created_at": name}))
    with pytest.raises(RegistryError, match="no model is promoted"):
        registry.load()
    assert registry.promote("a-1") is None
    assert registry.promote("b-2") == "a-1"
    assert registry.promote("c-3") == "b-2"
    assert registry.load().id == "c-3"
    assert registry.rollback() == ("c-3", "b-2")
    assert registry.rollback() == ("b-2", "a-1")
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    with pytest.raises(RegistryError, match="already promoted"):
        registry.promote("a-1")
    for bad in ("../a-1", "A-1", "a/1", ""):
        with pytest.raises(RegistryError, match="is not a model id"):
            registry.card(bad)
    with pytest.raises(RegistryError, match=r"no model 'zz'; known: a-1, b-2, c-3"):
        registry.promote("zz")
    assert [e.id for e in registry.entries()] == ["c-3", "b-2", "a-1"]


def test_train_refuses_too_little_data(btc: SymbolData) -> None:
    short = SymbolData("X", btc.features.iloc[:100], btc.labels.iloc[:100])
    with pytest.raises(ValueError, match="too few for 3 folds"):
        train([short], SMALL, PLAN, card={"id": "x"})
    with pytest.raises(ValueError, match="model 'gbm' is not one of: lgbm, xgb, ensemble"):
        TrainConfig(model="gbm")


def test_train_and_models_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    args = ["train", "--venue", "replay", "--symbols", "BTC/USD", "--timeframe", "4h", "--from", "2021-01-01"]
    result = runner.invoke(app, [*args, "--to", "2021-06-30", "--trees", "10", "--folds", "3", "--json", *data])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    model_id = card["id"]
    assert model_id.startswith("lgbm-4h-")
    assert card["symbols"] == ["BTC/USD"] and card["venue"] == ["replay-crypto"]
    assert card["series"][0]["first"].startswith("2021-01-01") and card["series"][0]["last"].startswith("2021-06-30")
    assert card["code_version"] and card["params"]["n_estimators"] == 10
    assert (tmp_path / "data" / "models" / model_id / "card.json").is_file()
    listed = runner.invoke(app, ["models", "list", *data])
    assert model_id in listed.output and "none promoted" in listed.output
    assert runner.invoke(app, ["models", "promote", model_id, *data]).output.strip() == f"promoted {model_id}"
    shown = runner.invoke(app, ["models", "show", *data])
    assert shown.exit_code == 0 and f"model {model_id} (promoted)" in shown.output and "fold 2:" in shown.output
    rollback = runner.invoke(app, ["models", "rollback", *data])
    assert rollback.exit_code == 2 and "nothing to roll back to" in rollback.output
    bad = {
        "--venue okx": ("okx", "BTC/USD", "1h", "training reads recorded bars"),
        "unknown symbol": ("replay", "DOGE/USD", "1h", "no replay market lists 'DOGE/USD'"),
        "finer timeframe": ("replay-crypto", "BTC/USD", "5m", "--timeframe must be 1h or coarser"),
        "bad timeframe": ("replay-crypto", "BTC/USD", "2h", "2h"),
    }
    for venue, symbol, timeframe, message in bad.values():
        result = runner.invoke(
            app,
            [
                "train",
                "--venue",
                venue,
                "--symbols",
                symbol,
                "--timeframe",
                timeframe,
                "--from",
                "2021-01-01",
                "--to",
                "2021-02-01",
                *data,
            ],
        )
        assert result.exit_code == 2 and message in result.output, result.output
    result = runner.invoke(app, [*args, "--to", "2021-06-30", "--model", "gbm", *data])
    assert result.exit_code == 2 and "lgbm, xgb, ensemble" in result.output
    assert runner.invoke(app, ["models", "show", "../etc", *data]).exit_code == 2


def test_training_on_the_lake_uses_the_same_bars_as_the_replay_it_was_filled_from(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    source = FlakySource("crypto")
    start, end = datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 5, 1, tzinfo=UTC)
    asyncio.run(backfill(BarsLake(data_dir / "lake"), source, "ETH/USDT", "1h", start, end, clock=source.clock))
    runner = CliRunner()
    common = ["--symbols", "ETH/USDT", "--timeframe", "1h", "--from", "2021-01-01", "--to", "2021-04-30"]
    options = ["--trees", "5", "--folds", "2", "--json", "--data-dir", str(data_dir)]
    cards = {}
    for venue in ("lake", "replay-crypto"):
        result = runner.invoke(app, ["train", "--venue", venue, *common, *options])
        assert result.exit_code == 0, result.output
        cards[venue] = json.loads(result.stdout)
    assert cards["lake"]["venue"] == ["lake"] and cards["replay-crypto"]["venue"] == ["replay-crypto"]
    assert cards["lake"]["series"] == cards["replay-crypto"]["series"]  # same bars, same sha256
    assert cards["lake"]["series"][0]["bars"] == 24 * 120  # every hour of 2021-01-01 -> 2021-04-30
    assert cards["lake"]["validation"] == cards["replay-crypto"]["validation"]
    assert cards["lake"]["id"] != cards["replay-crypto"]["id"]


def test_the_same_training_twice_in_one_second_gets_a_second_id(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    start, end = datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 4, 1, tzinfo=UTC)
    series = load_series(settings, "replay", ["BTC/USD"], "4h", start, end)
    clock = SimulatedClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    config = TrainConfig(folds=2, n_estimators=3, num_leaves=7)
    first, _ = train_model(settings, series, "4h", config, clock=clock, window=(start, end))
    second, directory = train_model(settings, series, "4h", config, clock=clock, window=(start, end))
    assert first.id.startswith("lgbm-4h-20260102-030405-") and second.id == f"{first.id}-2"
    assert directory.name == second.id and ModelRegistry(settings.models_dir).ids() == [first.id, second.id]


def test_a_seeded_search_is_deterministic_bounded_and_never_sees_a_test_fold(btc: SymbolData) -> None:
    from tools.search import SearchConfig, search

    bounds = SearchConfig(trials=3, timeout_seconds=600)
    tuned, summary = search([btc], SMALL, PLAN, bounds)
    again, summary_again = search([btc], SMALL, PLAN, bounds)
    assert tuned == again and summary == summary_again  # same seed, same data: same trials, same best
    assert summary["trials_done"] == 3 and summary["stopped_by"] == "trials" and len(summary["trials"]) == 3
    assert summary["seed"] == SMALL.seed and summary["max_trials"] == 3
    best = min(summary["trials"], key=lambda t: t["value"])
    assert summary["best_params"] == best["params"] and summary["best_value"] == best["value"]
    assert {k: getattr(tuned, k) for k in best["params"]} == best["params"]
    assert tuned.n_estimators == SMALL.n_estimators and tuned.seed == SMALL.seed  # not searched
    other, _ = search([btc], dataclasses.replace(SMALL, seed=8), PLAN, bounds)
    assert other != tuned  # another seed tries other parameters
    # Only the first training window: it ends before the first test window of the validation.
    model = train([btc], tuned, PLAN, card={"id": "tuned"})
    first_test = model.card["validation"]["fold_metrics"][0]["windows"]["BTC/USD"]["test"][0]
    assert summary["inner_windows"]["BTC/USD"][1] < first_test
    # The time bound: a timeout stops a search of many trials long before they are done.
    _, timed = search([btc], SMALL, PLAN, SearchConfig(trials=10_000, timeout_seconds=0.5))
    assert timed["stopped_by"] == "timeout" and 1 <= timed["trials_done"] < 10_000
    with pytest.raises(ValueError, match="--search must be 1 trial or more"):
        SearchConfig(trials=0)


def test_the_short_side_trains_saves_and_loads_with_the_long_model(btc: SymbolData, tmp_path: Path) -> None:
    venue = ReplayVenue("crypto", SimulatedClock(datetime(2021, 1, 1, tzinfo=UTC)))
    series = venue.series("BTC/USD")
    bars = series.frame(series.timeframe).bars.loc[:"2021-03-31"]
    costs = RoundTripCosts(venue.instrument_of("BTC/USD"), Decimal(5))
    both = make_dataset("BTC/USD", bars, "1h", plan=PLAN, costs=costs, calendar="24/7", sides=("long", "short"))
    assert both.short_labels is not None and both.manifest["short_up_rate"] is not None
    np.testing.assert_array_equal(both.features, btc.features)
    config = dataclasses.replace(SMALL, sides=("long", "short"))
    model = train([both], config, PLAN, card={"id": "two-sides"})
    assert model.short is not None and model.short.id == "two-sides-short"
    assert model.card["sides"] == ["long", "short"] and model.card["short"]["labels"]["side"] == "short"
    assert (
        model.short.card["validation"]["out_of_sample"]["up_rate"]
        != model.card["validation"]["out_of_sample"]["up_rate"]
    )
    registry = ModelRegistry(tmp_path / "models")
    directory = registry.save(model)
    loaded = registry.load("two-sides")
    assert loaded.short is not None
    np.testing.assert_allclose(
        loaded.short.predict_proba(both.features), model.short.predict_proba(both.features), rtol=1e-6
    )
    assert TrainConfig.from_card(loaded.card["params"]) == config
    (directory / "short" / "calibration.json").write_text('{"x": [], "y": []}')
    with pytest.raises(RegistryError, match=r"short/calibration.json is corrupt"):
        registry.load("two-sides")
    with pytest.raises(ValueError, match="sides must be long, or long and short"):
        TrainConfig(sides=("short",))


def test_train_command_with_the_short_side_and_a_search(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    args = ["train", "--venue", "replay", "--symbols", "BTC/USD", "--timeframe", "4h", "--from", "2021-01-01"]
    extra = ["--to", "2021-06-30", "--trees", "5", "--folds", "2", "--short", "--search", "2", "--search-timeout", "60"]
    result = runner.invoke(app, [*args, *extra, "--json", *data])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["sides"] == ["long", "short"] and card["params"]["sides"] == ["long", "short"]
    assert card["search"]["trials_done"] == 2 and card["search"]["max_trials"] == 2
    assert card["search"]["timeout_seconds"] == 60 and card["search"]["stopped_by"] == "trials"
    for name, value in card["search"]["best_params"].items():
        assert card["params"][name] == value
    shown = runner.invoke(app, ["models", "show", card["id"], *data])
    assert shown.exit_code == 0, shown.output
    assert "sides long and short" in shown.output and "  short side:" in shown.output
    assert "search: 2 trials (at most 2 and 60 s; stopped by trials), seed 7" in shown.output
    bad = runner.invoke(app, [*args, "--to", "2021-06-30", "--search", "2", "--search-timeout", "0", *data])
    assert bad.exit_code == 2 and "--search-timeout must be above 0 seconds" in bad.output
