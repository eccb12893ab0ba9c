"""Retraining on drift (bot/retrain.py): the daily check flags drift, a model like the promoted one is
trained over the latest window on the replay venue, and it is promoted only when its log loss on the
newest fold's out-of-sample rows beats the promoted model's on the same rows; otherwise it is kept
as a candidate. A failure is a notice. Small models on ETH/USDT 1h keep it quick."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.ml_policy import MLPolicy
from bot.drift import DRIFT_KEY
from bot.ml import load_series, registry, train_model
from bot.retrain import RULE, drift_notices, retrain_source
from bot.services import Services, open_services
from bot.settings import load_settings
from tests.test_graph import ETH
from tools.ml import Calibrator, TrainConfig, TrainedModel
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

NOW = datetime(2021, 7, 6, 6, 0, 5, tzinfo=UTC)
SMALL = TrainConfig(folds=2, n_estimators=15, num_leaves=7, min_child_samples=20)
# Deep trees that learn their training rows by heart: in sample they score almost perfectly.
OVERFIT = TrainConfig(
    folds=2, n_estimators=150, num_leaves=63, max_depth=10, min_child_samples=2, learning_rate=0.3, subsample=1.0
)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(data_dir=tmp_path / "data").model_copy(update={"drift_retrain": True})
    async with open_services(settings, clock=SimulatedClock(NOW)) as opened:
        yield opened


def promote_drifted(services: Services, config: TrainConfig, start: datetime, end: datetime, **change: object) -> str:
    """Train a model on ETH/USDT 1h over [start, end), store a copy whose training-window reference
    of one feature is moved far away (so the daily check flags drift), with ``change`` applied
    (e.g. another calibrator), and promote it; its id."""
    settings = services.settings
    series = load_series(settings, "replay-crypto", [ETH], "1h", start, end)
    trained, _ = train_model(settings, series, "1h", config, clock=SimulatedClock(end), window=(start, end))
    card = json.loads(json.dumps(trained.card))
    card["id"] = "current-1"
    moved = trained.features[0]
    card["drift_reference"]["features"][moved] = [v + 1000 for v in card["drift_reference"]["features"][moved]]
    current = dataclasses.replace(TrainedModel(card, trained.boosters, trained.calibrator), **change)
    reg = registry(settings)
    reg.save(current)
    reg.promote("current-1")
    return "current-1"


async def test_a_better_retrained_model_is_promoted(services: Services) -> None:
    # The promoted model says 0.99 for every bar: its log loss is terrible, any sane model beats it.
    start, end = datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 5, 30, tzinfo=UTC)
    promote_drifted(services, SMALL, start, end, calibrator=Calibrator((0.0, 1.0), (0.99, 0.99)))
    policy = MLPolicy(lambda: registry(services.settings).load(None), services.deps)
    services.deps.policy = policy
    assert policy.model().id == "current-1"
    notices = await drift_notices(services)
    assert len(notices) == 2 and "drift over the last 500 bars" in notices[0]
    assert notices[1].startswith("retrained after drift: new model lgbm-1h-20210706-060005-")
    assert "beats current-1: log loss " in notices[1] and notices[1].endswith("; promoted")
    reg = registry(services.settings)
    new_id = reg.promoted()
    assert new_id is not None and new_id != "current-1" and new_id in notices[1]
    card = reg.card(new_id)
    retrain = card["retrain"]
    assert retrain["promoted"] is True and retrain["rule"] == RULE and retrain["compared_with"] == "current-1"
    assert retrain["candidate_log_loss"] < retrain["current_log_loss"]
    assert f"{retrain['candidate_log_loss']:.4f} vs {retrain['current_log_loss']:.4f}" in notices[1]
    assert retrain["drifted"] == services.signals.get_value(DRIFT_KEY)["drifted"]  # type: ignore[index]
    # The same length of window as the promoted card's (90 days), ending at the clock's now.
    assert card["window"] == {"from": (NOW - timedelta(days=90)).isoformat(), "to": NOW.isoformat()}
    assert (card["symbols"], card["venue"], card["timeframe"], card["kind"]) == ([ETH], ["replay-crypto"], "1h", "lgbm")
    assert card["params"] == {**reg.card("current-1")["params"]}
    # The newest fold's rows end at the last labelled bar before now.
    ((first, last),) = retrain["sides"]["long"]["windows"].values()
    assert datetime.fromisoformat(first) < datetime.fromisoformat(last) < NOW
    assert retrain["current_in_sample"] is False  # current-1 was trained before those rows
    assert policy.model().id == new_id  # the ML policy follows the promoted model at its next decision
    assert await drift_notices(services) == []  # once a day


async def test_a_retrained_model_that_does_not_beat_the_promoted_one_is_kept_as_a_candidate(
    services: Services,
) -> None:
    # The promoted model learnt the very bars of the latest window by heart and is not calibrated
    # away from them: on the newest fold it is scored in sample and wins.
    start = NOW - timedelta(days=90)
    promote_drifted(services, OVERFIT, start, NOW, calibrator=Calibrator())
    before = set(registry(services.settings).ids())
    notices = await drift_notices(services)
    assert len(notices) == 2
    assert "does not beat current-1" in notices[1] and "kept as a candidate" in notices[1]
    assert "(current-1 was trained on some of those bars)" in notices[1]
    reg = registry(services.settings)
    assert reg.promoted() == "current-1"
    candidates = sorted(set(reg.ids()) - before)
    assert len(candidates) == 1 and candidates[0] in notices[1]
    retrain = reg.card(candidates[0])["retrain"]
    assert retrain["promoted"] is False and retrain["current_in_sample"] is True
    assert retrain["candidate_log_loss"] > 4 * retrain["current_log_loss"]  # by far: not a coin toss


async def test_retraining_is_off_by_default_and_a_failure_is_a_notice(services: Services) -> None:
    start, end = datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 5, 30, tzinfo=UTC)
    promote_drifted(services, SMALL, start, end)
    off = dataclasses.replace(services, settings=services.settings.model_copy(update={"drift_retrain": False}))
    notices = await drift_notices(off)
    assert len(notices) == 1 and "drift over the last 500 bars" in notices[0]
    assert len(registry(services.settings).ids()) == 2  # what promote_drifted trained, and current-1
    # A card whose venue serves no recorded bars: the retrain fails, the run goes on.
    services.signals.set_value(DRIFT_KEY, {"day": "2021-07-05"}, at=NOW)
    directory = registry(services.settings).root / "current-1"
    card = json.loads((directory / "card.json").read_text())
    (directory / "card.json").write_text(json.dumps({**card, "venue": ["okx"]}))
    notices = await drift_notices(services)
    assert len(notices) == 2
    assert notices[1].startswith("retrain after drift failed: --venue 'okx': training reads recorded bars")
    assert registry(services.settings).promoted() == "current-1"


def test_the_retrain_source_is_the_cards() -> None:
    card = {
        "id": "m",
        "venue": ["replay-crypto", "replay-us"],
        "symbols": ["BTC/USD", "AMZN"],
        "timeframe": "1h",
        "window": {"from": "2021-01-01T00:00:00+00:00", "to": "2021-01-31T00:00:00+00:00"},
    }
    assert retrain_source(card) == ("replay", ["BTC/USD", "AMZN"], "1h", 30 * 86400.0)
    assert retrain_source({**card, "venue": ["lake"]})[0] == "lake"
    with pytest.raises(Exception, match="lacks its venue, symbols, timeframe or window"):
        retrain_source({"id": "m", "venue": ["lake"]})


def test_drift_retrain_reads_off_and_on_and_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.setenv("TRADEOPS_DRIFT_RETRAIN", "on")
    assert load_settings().drift_retrain is True
    monkeypatch.setenv("TRADEOPS_DRIFT_RETRAIN", "off")
    assert load_settings().drift_retrain is False
    monkeypatch.setenv("TRADEOPS_DRIFT_RETRAIN", "sometimes")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "TRADEOPS_DRIFT_RETRAIN must be off or on, got 'sometimes'" in result.output
