"""The ML signal model: gradient-boosted trees on ``tools.features``, trained on ``tools.labels``,
validated walk-forward with ``tools.splits`` (the backtester's splitter), calibrated with isotonic
regression on out-of-fold predictions.

What the probability means
    ``TrainedModel.predict_proba`` is the calibrated chance that a long entered at the next bar's
    open reaches TP1 before its stop (2 ATR, TP1 at 1.5 R, 48 bars) with a net profit after
    round-trip costs. The raw tree output is mapped through an isotonic curve fitted on the
    out-of-fold predictions of every walk-forward fold.

Validation (what the model card's numbers are)
    ``walk_forward(n_bars, k, purge=horizon, embargo=horizon, min_train=...)`` per symbol; fold i
    trains on every labelled bar of its train window (a label looking ``horizon`` bars ahead never
    reaches the test window: that is the purge) and predicts its test window. Per fold: AUC and
    log loss of the raw output; then, for folds 1..k-1, the same predictions calibrated with an
    isotonic curve fitted on the out-of-fold predictions of the folds **before** it only, and on
    those: log loss, TP1 precision at the threshold (the share of bars with a calibrated
    probability at or above it whose label is up), the number of such signals, and the expected
    calibration error (ECE, 10 equal-width bins). Fold 0 has no earlier fold to calibrate on, so its
    calibrated figures are None. The reliability table pools folds 1..k-1: all out of sample.
    The final model is then trained on every labelled bar, and its calibration curve on the
    out-of-fold predictions of all folds.

Shorts: with ``sides=("long", "short")`` a second model is trained the same way on the mirrored
labels (``tools.labels.triple_barrier(side="short")``: a sell-to-open reaching TP1 below before its
stop above, net of costs) over the same features and folds, with its own calibration curve and
figures. It is stored inside the long model's directory (``short/``) and travels with it: one
model id, one promotion. ``TrainedModel.short`` is None for a long-only model.

Reproducibility: a fixed ``seed`` with deterministic LightGBM and XGBoost settings gives identical
predictions on identical data (a test checks it). CPU only, one thread by default.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tools.drift import reference
from tools.features import FEATURE_VERSION, build_features
from tools.indicators import compute
from tools.labels import BarrierPlan, RoundTripCosts, triple_barrier
from tools.splits import walk_forward

__all__ = [
    "MODEL_KINDS",
    "Calibrator",
    "LatestFold",
    "ModelFileError",
    "SymbolData",
    "TrainConfig",
    "TrainedModel",
    "make_dataset",
    "reliability",
    "train",
]

MODEL_KINDS = ("lgbm", "xgb", "ensemble")
FloatArray = npt.NDArray[np.float64]
Progress = Callable[[int, int, str], None]  # (steps done, total steps, what is running)
_FILES = {"lgbm": "lgbm.txt", "xgb": "xgb.json"}
CALIBRATION_FILE = "calibration.json"
CARD_FILE = "card.json"
SHORT_DIR = "short"  # the short side's model, inside the long model's directory
LABEL_MEANING = {
    "long": "1 when a long filled at the next bar's open reaches TP1 before the stop (a bar touching both "
    "counts as the stop) with a net profit after round-trip costs",
    "short": "1 when a short sold at the next bar's open reaches TP1 below before the stop above (a bar "
    "touching both counts as the stop) with a net profit after round-trip costs",
}


class ModelFileError(Exception):
    """A model directory whose files are missing, unreadable or not what the card says."""


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and validated; stored in the model card as ``params``."""

    model: str = "lgbm"
    folds: int = 4
    purge_bars: int | None = None  # None: the label horizon
    embargo_bars: int | None = None  # None: the label horizon
    min_train_share: float = 0.3  # share of each series before the first test window
    threshold: float = 0.55  # calibrated probability at which the model signals a BUY
    seed: int = 7
    n_estimators: int = 200
    learning_rate: float = 0.03
    num_leaves: int = 15
    max_depth: int = 4
    min_child_samples: int = 50
    subsample: float = 0.8
    colsample: float = 0.8
    # One thread: on a loaded 2-core machine OpenMP's spinning threads made a fit 12x slower (0.7 s
    # on one thread, 8.4 s on two, with 8 other processes running); see benchmarks/train.py.
    threads: int = 1
    sides: tuple[str, ...] = ("long",)  # ("long", "short"): a second model for sell-to-open entries

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model {self.model!r} is not one of: {', '.join(MODEL_KINDS)}")
        if self.folds < 2:
            raise ValueError(f"folds must be 2 or more (fold 0 has nothing to calibrate on), got {self.folds}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if not 0 <= self.min_train_share < 1:
            raise ValueError(f"min_train_share must be in [0, 1), got {self.min_train_share}")
        if self.n_estimators < 1:
            raise ValueError(f"n_estimators must be 1 or more, got {self.n_estimators}")
        if tuple(self.sides) not in (("long",), ("long", "short")):
            raise ValueError(f"sides must be long, or long and short, got {', '.join(map(str, self.sides))}")

    @classmethod
    def from_card(cls, params: dict[str, Any]) -> TrainConfig:
        """The config a model card's ``params`` recorded (JSON turned tuples into lists; keys this
        version does not know are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in params.items() if k in known}
        if "sides" in values:
            values["sides"] = tuple(values["sides"])
        return cls(**values)


@dataclass
class SymbolData:
    """One symbol's bars turned into model rows: features and labels on every bar (NaN labels
    where the outcome is unknown), plus what the card records about the data."""

    symbol: str
    features: pd.DataFrame
    labels: pd.DataFrame  # tools.labels.triple_barrier's columns, the long side
    manifest: dict[str, Any] = field(default_factory=dict)
    short_labels: pd.DataFrame | None = None  # the mirrored labels, when the short side is trained

    def side_labels(self, side: str) -> pd.DataFrame:
        if side == "long":
            return self.labels
        if self.short_labels is None:
            raise ValueError(f"{self.symbol} has no short labels: make_dataset(..., sides=('long', 'short'))")
        return self.short_labels


def _frame_digest(bars: pd.DataFrame) -> str:
    """sha256 of the OHLCV values and open times: the card's proof of which bars were used."""
    digest = hashlib.sha256()
    digest.update(pd.DatetimeIndex(bars.index).as_unit("us").asi8.tobytes())
    for col in ("open", "high", "low", "close", "volume"):
        digest.update(np.ascontiguousarray(bars[col].to_numpy(dtype="float64")).tobytes())
    return digest.hexdigest()


def make_dataset(
    symbol: str,
    bars: pd.DataFrame,
    timeframe: str,
    *,
    plan: BarrierPlan,
    costs: RoundTripCosts | None,
    calendar: str | None = None,
    higher: Sequence[str] | None = None,
    sides: Sequence[str] = ("long",),
) -> SymbolData:
    """Features (``tools.features.build_features``) and labels of every bar of ``bars``, for each
    side of ``sides`` (the long side always)."""
    feats = build_features(bars, timeframe, higher=higher, calendar=calendar)
    atr = compute(bars, ["atr:14"])["ATRr_14"]
    labels = triple_barrier(bars, atr, plan, costs)
    short = triple_barrier(bars, atr, plan, costs, side="short") if "short" in sides else None
    labelled = labels["label"].notna()
    manifest = {
        "symbol": symbol,
        "bars": len(bars),
        "first": bars.index[0].isoformat() if len(bars) else None,
        "last": bars.index[-1].isoformat() if len(bars) else None,
        "labelled": int(labelled.sum()),
        "up_rate": float(labels.loc[labelled, "label"].mean()) if labelled.any() else None,
        "sha256": _frame_digest(bars),
    }
    if short is not None:
        known = short["label"].notna()
        manifest["short_up_rate"] = float(short.loc[known, "label"].mean()) if known.any() else None
    return SymbolData(symbol, feats, labels, manifest, short)


# --- calibration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw to calibrated probability: linear between the isotonic fit's
    thresholds, flat beyond them. Empty thresholds: the identity."""

    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    @classmethod
    def fit(cls, raw: FloatArray, labels: FloatArray) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression

        if len(raw) < 2 or len(np.unique(labels)) < 2:
            return cls()
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, labels)
        return cls(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))

    def apply(self, raw: FloatArray) -> FloatArray:
        if not self.x:
            return np.asarray(raw, dtype="float64")
        return np.interp(raw, self.x, self.y)


def reliability(prob: FloatArray, labels: FloatArray, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins of predicted probability: count, mean predicted, observed up rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        rows.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "count": count,
                "mean_predicted": float(prob[mask].mean()) if count else None,
                "observed_up_rate": float(labels[mask].mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(prob: FloatArray, labels: FloatArray, bins: int = 10) -> float | None:
    """Sum over bins of (share of rows) x |mean predicted - observed rate|; None without rows."""
    if len(prob) == 0:
        return None
    table = reliability(prob, labels, bins)
    return float(
        sum(r["count"] / len(prob) * abs(r["mean_predicted"] - r["observed_up_rate"]) for r in table if r["count"] > 0)
    )


def _metrics(raw: FloatArray, labels: FloatArray, calibrated: FloatArray | None, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import log_loss, roc_auc_score

    both = len(np.unique(labels)) == 2
    out: dict[str, Any] = {
        "test_rows": len(labels),
        "up_rate": float(labels.mean()) if len(labels) else None,
        "auc": float(roc_auc_score(labels, raw)) if both else None,
        "log_loss_raw": float(log_loss(labels, np.clip(raw, 1e-6, 1 - 1e-6), labels=[0, 1])) if len(labels) else None,
        "log_loss": None,
        "signals": None,
        "tp1_precision": None,
        "ece": None,
    }
    if calibrated is not None and len(labels):
        chosen = calibrated >= threshold
        out["log_loss"] = float(log_loss(labels, np.clip(calibrated, 1e-6, 1 - 1e-6), labels=[0, 1]))
        out["signals"] = int(chosen.sum())
        out["tp1_precision"] = float(labels[chosen].mean()) if chosen.any() else None
        out["ece"] = expected_calibration_error(calibrated, labels)
    return out


# --- the boosters --------------------------------------------------------------------------------


def _lgbm_params(config: TrainConfig) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "min_data_in_leaf": config.min_child_samples,
        "bagging_fraction": config.subsample,
        "bagging_freq": 1,
        "feature_fraction": config.colsample,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.threads,
        "verbose": -1,
    }


def _xgb_params(config: TrainConfig) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "eta": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": max(1.0, config.min_child_samples / 10),
        "subsample": config.subsample,
        "colsample_bytree": config.colsample,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": config.threads,
        "device": "cpu",
    }


def fit_boosters(kind: str, x: pd.DataFrame, y: FloatArray, config: TrainConfig) -> dict[str, Any]:
    boosters: dict[str, Any] = {}
    if kind in ("lgbm", "ensemble"):
        import lightgbm as lgb

        data = lgb.Dataset(x.to_numpy(dtype="float64"), label=y, feature_name=list(x.columns), free_raw_data=True)
        boosters["lgbm"] = lgb.train(_lgbm_params(config), data, num_boost_round=config.n_estimators)
    if kind in ("xgb", "ensemble"):
        import xgboost as xgb

        matrix = xgb.DMatrix(x.to_numpy(dtype="float64"), label=y, feature_names=list(x.columns))
        boosters["xgb"] = xgb.train(_xgb_params(config), matrix, num_boost_round=config.n_estimators)
    return boosters


def boosters_proba(boosters: dict[str, Any], x: pd.DataFrame) -> FloatArray:
    values = x.to_numpy(dtype="float64")
    parts: list[FloatArray] = []
    if "lgbm" in boosters:
        parts.append(np.asarray(boosters["lgbm"].predict(values), dtype="float64"))
    if "xgb" in boosters:
        import xgboost as xgb

        matrix = xgb.DMatrix(values, feature_names=list(x.columns))
        parts.append(np.asarray(boosters["xgb"].predict(matrix), dtype="float64"))
    return np.mean(parts, axis=0)  # the ensemble: the plain mean of the two probabilities


def _contributions(boosters: dict[str, Any], x: pd.DataFrame) -> FloatArray:
    """Per-feature contributions in log-odds (SHAP values of the trees), averaged over boosters;
    one row per row of ``x``, one column per feature (the bias column dropped)."""
    values = x.to_numpy(dtype="float64")
    parts: list[FloatArray] = []
    if "lgbm" in boosters:
        parts.append(np.asarray(boosters["lgbm"].predict(values, pred_contrib=True))[:, :-1])
    if "xgb" in boosters:
        import xgboost as xgb

        matrix = xgb.DMatrix(values, feature_names=list(x.columns))
        parts.append(np.asarray(boosters["xgb"].predict(matrix, pred_contribs=True))[:, :-1])
    return np.mean(parts, axis=0)


# --- the trained model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LatestFold:
    """The newest walk-forward fold's test rows of one side, as training scored them out of sample:
    features, labels and the calibrated probability (the curve fitted on the earlier folds only).
    Kept in memory after training (not saved): what a retrain compares models on."""

    side: str
    features: pd.DataFrame  # the rows of every symbol, in the model's feature columns
    labels: FloatArray
    calibrated: FloatArray
    windows: dict[str, list[str]]  # symbol -> [first, last] open time of its test rows


@dataclass
class TrainedModel:
    """Boosters, their calibration curve and the model card (a JSON-ready dict); ``short``: the
    short side's model, when one was trained."""

    card: dict[str, Any]
    boosters: dict[str, Any]
    calibrator: Calibrator
    short: TrainedModel | None = None
    latest_fold: LatestFold | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return str(self.card["id"])

    @property
    def features(self) -> list[str]:
        return list(self.card["features"])

    def _columns(self, features: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in features.columns]
        if missing:
            raise ValueError(f"model {self.id} needs feature(s) {', '.join(missing)}; got {list(features.columns)}")
        return features[self.features]

    def raw_proba(self, features: pd.DataFrame) -> FloatArray:
        return boosters_proba(self.boosters, self._columns(features))

    def predict_proba(self, features: pd.DataFrame) -> FloatArray:
        """Calibrated probability of TP1 first, net of costs, per row of ``features``."""
        return self.calibrator.apply(self.raw_proba(features))

    def top_contributions(self, features: pd.DataFrame, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` features that moved the last row's score most (log-odds, signed)."""
        contrib = _contributions(self.boosters, self._columns(features).iloc[[-1]])[0]
        order = np.argsort(-np.abs(contrib))[:n]
        return [(self.features[i], float(contrib[i])) for i in order]

    def save(self, directory: Path) -> None:
        """Write the boosters, the calibration and the card (with each file's sha256) into
        ``directory``, which must exist and be empty; the short side's model into ``short/`` (its
        card's sha256 in this card, so the whole tree is checked on load)."""
        files: dict[str, str] = {}
        if self.short is not None:
            (directory / SHORT_DIR).mkdir()
            self.short.save(directory / SHORT_DIR)
            short_card = directory / SHORT_DIR / CARD_FILE
            files[f"{SHORT_DIR}/{CARD_FILE}"] = hashlib.sha256(short_card.read_bytes()).hexdigest()
        for kind, booster in self.boosters.items():
            path = directory / _FILES[kind]
            booster.save_model(str(path))
            files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        calibration = directory / CALIBRATION_FILE
        calibration.write_text(json.dumps({"x": list(self.calibrator.x), "y": list(self.calibrator.y)}))
        files[calibration.name] = hashlib.sha256(calibration.read_bytes()).hexdigest()
        self.card["files"] = files
        (directory / CARD_FILE).write_text(json.dumps(self.card, indent=2, allow_nan=False))

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        """Read a model saved by ``save``; ModelFileError naming the file for anything missing,
        unreadable or whose sha256 differs from the card's."""
        card = read_card(directory)
        files = card.get("files")
        if not isinstance(files, dict) or not files:
            raise ModelFileError(f"model card {directory / CARD_FILE} lists no model files")
        for name, digest in files.items():
            path = directory / str(name)
            try:
                actual = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                raise ModelFileError(f"model file {path} cannot be read ({exc.strerror or exc})") from None
            if actual != digest:
                raise ModelFileError(f"model file {path} is corrupt: its sha256 differs from the card's")
        boosters: dict[str, Any] = {}
        try:
            if _FILES["lgbm"] in files:
                import lightgbm as lgb

                boosters["lgbm"] = lgb.Booster(model_file=str(directory / _FILES["lgbm"]))
            if _FILES["xgb"] in files:
                import xgboost as xgb

                booster = xgb.Booster()
                booster.load_model(str(directory / _FILES["xgb"]))
                boosters["xgb"] = booster
            curve = json.loads((directory / CALIBRATION_FILE).read_text())
            calibrator = Calibrator(tuple(map(float, curve["x"])), tuple(map(float, curve["y"])))
        except Exception as exc:  # a booster library's own error for a file it cannot parse
            raise ModelFileError(f"model in {directory} cannot be loaded: {exc}") from None
        if not boosters:
            raise ModelFileError(f"model card {directory / CARD_FILE} lists no booster file")
        short = cls.load(directory / SHORT_DIR) if f"{SHORT_DIR}/{CARD_FILE}" in files else None
        return cls(card, boosters, calibrator, short)


def read_card(directory: Path) -> dict[str, Any]:
    path = directory / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"model card {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"model card {path} cannot be read: {exc}") from None
    if not isinstance(card, dict) or "id" not in card or "features" not in card:
        raise ModelFileError(f"model card {path} is not a model card (no id or features)")
    return card


# --- training ------------------------------------------------------------------------------------


def labelled_rows(
    data: SymbolData, start: int, end: int, side: str = "long"
) -> tuple[pd.DataFrame, FloatArray, pd.DataFrame]:
    labels = data.side_labels(side).iloc[start:end]
    keep = labels["label"].notna().to_numpy()
    return data.features.iloc[start:end][keep], labels["label"].to_numpy()[keep], labels[keep]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (the card is written with allow_nan=False)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@dataclass
class _Side:
    """One side's walk-forward and final fit."""

    boosters: dict[str, Any]
    calibrator: Calibrator
    validation: dict[str, Any]
    all_x: pd.DataFrame
    oof_calibrated: FloatArray  # every fold's test rows through the final curve (the drift reference)
    final_rows: int
    latest: LatestFold


def purge_embargo(config: TrainConfig, plan: BarrierPlan) -> tuple[int, int]:
    """(purge, embargo) in bars: the label horizon unless the config says otherwise."""
    purge = plan.horizon_bars if config.purge_bars is None else config.purge_bars
    embargo = plan.horizon_bars if config.embargo_bars is None else config.embargo_bars
    return purge, embargo


def walk_forward_splits(datasets: Sequence[SymbolData], config: TrainConfig, plan: BarrierPlan) -> dict[str, Any]:
    """Each symbol's ``tools.splits.walk_forward`` folds as ``train`` cuts them (ValueError when a
    series is too short)."""
    purge, embargo = purge_embargo(config, plan)
    return {
        d.symbol: walk_forward(
            len(d.features),
            config.folds,
            purge=purge,
            embargo=embargo,
            min_train=int(len(d.features) * config.min_train_share),
        )
        for d in datasets
    }


def _fit_side(
    datasets: Sequence[SymbolData],
    config: TrainConfig,
    splits: dict[str, Any],
    side: str,
    step: Callable[[str], None],
    gaps: tuple[int, int],
) -> _Side:
    oof_raw: list[FloatArray] = []
    oof_labels: list[FloatArray] = []
    fold_cards: list[dict[str, Any]] = []
    last_x = pd.DataFrame()
    for k in range(config.folds):
        step(f"{side} fold {k + 1}/{config.folds}")
        train_x, train_y, test_x, test_y = [], [], [], []
        windows: dict[str, Any] = {}
        for d in datasets:
            fold = splits[d.symbol][k]
            tx, ty, _ = labelled_rows(d, fold.train_start, fold.train_end, side)
            vx, vy, _ = labelled_rows(d, fold.test_start, fold.test_end, side)
            train_x.append(tx)
            train_y.append(ty)
            test_x.append(vx)
            test_y.append(vy)
            index = d.features.index
            windows[d.symbol] = {
                "train": [index[fold.train_start].isoformat(), index[fold.train_end - 1].isoformat()],
                "test": [index[fold.test_start].isoformat(), index[fold.test_end - 1].isoformat()],
            }
        x_train, y_train = pd.concat(train_x), np.concatenate(train_y)
        x_test, y_test = pd.concat(test_x), np.concatenate(test_y)
        if len(np.unique(y_train)) < 2:
            raise ValueError(
                f"fold {k} ({side}) trains on {len(y_train)} labelled bars of a single class: too little data or "
                "no TP1 reached after costs; widen --from/--to"
            )
        raw = boosters_proba(fit_boosters(config.model, x_train, y_train, config), x_test)
        calibrated = None
        if oof_raw:
            calibrated = Calibrator.fit(np.concatenate(oof_raw), np.concatenate(oof_labels)).apply(raw)
        fold_cards.append(
            {
                "index": k,
                "windows": windows,
                "train_rows": len(y_train),
                **_metrics(raw, y_test, calibrated, config.threshold),
            }
        )
        oof_raw.append(raw)
        oof_labels.append(y_test)
        last_x = x_test
    step(f"{side} final model")
    # Out of sample, calibrated only on earlier folds: folds 1..k-1.
    later_cal = [
        Calibrator.fit(np.concatenate(oof_raw[:k]), np.concatenate(oof_labels[:k])).apply(oof_raw[k])
        for k in range(1, config.folds)
    ]
    pooled_cal, pooled_y = np.concatenate(later_cal), np.concatenate(oof_labels[1:])
    pooled = _metrics(np.concatenate(oof_raw[1:]), pooled_y, pooled_cal, config.threshold)
    all_x = pd.concat([labelled_rows(d, 0, len(d.features), side)[0] for d in datasets])
    all_y = np.concatenate([labelled_rows(d, 0, len(d.features), side)[1] for d in datasets])
    boosters = fit_boosters(config.model, all_x, all_y, config)
    calibrator = Calibrator.fit(np.concatenate(oof_raw), np.concatenate(oof_labels))
    newest = fold_cards[-1]["windows"]
    latest = LatestFold(
        side, last_x, oof_labels[-1], later_cal[-1], {symbol: w["test"] for symbol, w in newest.items()}
    )
    validation = {
        "splitter": "tools.splits.walk_forward",
        "folds": config.folds,
        "purge_bars": gaps[0],
        "embargo_bars": gaps[1],
        "calibration": "isotonic; a fold's calibrated figures use a curve fitted on earlier folds only",
        "fold_metrics": fold_cards,
        "out_of_sample": {"folds": f"1..{config.folds - 1}", **pooled},
        "reliability": reliability(pooled_cal, pooled_y),
    }
    return _Side(boosters, calibrator, validation, all_x, calibrator.apply(np.concatenate(oof_raw)), len(all_y), latest)


def train(
    datasets: Sequence[SymbolData],
    config: TrainConfig,
    plan: BarrierPlan,
    *,
    card: dict[str, Any],
    on_progress: Progress | None = None,
) -> TrainedModel:
    """Walk-forward validate, then fit the final model on every labelled row of ``datasets``; the
    same again for the short side when ``config.sides`` has it (``TrainedModel.short``).

    ``card`` holds what the caller knows (id, created_at, code version, venue, timeframe, data
    window, costs); this adds features, labels, params, the fold metrics, the pooled out-of-sample
    figures and the reliability table. ValueError, saying why, when a series is too short for the
    folds or the labels hold a single class."""
    if not datasets:
        raise ValueError("no data to train on")
    purge, embargo = purge_embargo(config, plan)
    columns = list(datasets[0].features.columns)
    splits = walk_forward_splits(datasets, config, plan)
    total = len(config.sides) * (config.folds + 1)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if on_progress is not None:
            on_progress(done, total, what)
        done += 1

    fitted = {side: _fit_side(datasets, config, splits, side, step, (purge, embargo)) for side in config.sides}
    if on_progress is not None:
        on_progress(total, total, "done")
    cards: dict[str, dict[str, Any]] = {}
    for side, result in fitted.items():
        # The training window's distributions, the baseline of tools.drift's daily check. The
        # probability's are the out-of-fold ones (through the final curve): live scores are out of
        # sample too, and in-sample scores of the final model would be more extreme than either.
        drift_reference = reference(
            {name: result.all_x[name].to_numpy(dtype="float64") for name in columns}, result.oof_calibrated
        )
        cards[side] = {
            **card,
            "id": card["id"] if side == "long" else f"{card['id']}-{side}",
            "side": side,
            "kind": config.model,
            "feature_version": FEATURE_VERSION,
            "features": columns,
            "labels": {
                "side": side,
                "stop_atr": plan.stop_atr,
                "tp1_r": plan.tp1_r,
                "tp1_atr": plan.tp1_atr,
                "horizon_bars": plan.horizon_bars,
                "meaning": LABEL_MEANING[side],
            },
            "params": asdict(config),
            "threshold": config.threshold,
            "series": [d.manifest for d in datasets],
            "validation": result.validation,
            "final_model_rows": result.final_rows,
            "drift_reference": drift_reference,
        }
    long = fitted["long"]
    short = None
    if "short" in fitted:
        short_card = cards["short"]
        short = TrainedModel(_clean(short_card), fitted["short"].boosters, fitted["short"].calibrator)
        short.latest_fold = fitted["short"].latest
        cards["long"]["short"] = {
            "id": short_card["id"],
            "labels": short_card["labels"],
            "validation": short_card["validation"],
            "final_model_rows": short_card["final_model_rows"],
        }
    cards["long"]["sides"] = list(config.sides)
    return TrainedModel(_clean(cards["long"]), long.boosters, long.calibrator, short, long.latest)
