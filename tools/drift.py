"""Drift of a model's inputs and output: the population stability index (PSI) and the two-sample
Kolmogorov-Smirnov statistic of each feature and of the predicted probability, a live window
against the training window stored with the model.

What the training window is
    At training time ``reference`` keeps, per feature (every labelled training row) and for the
    calibrated probability (the walk-forward's out-of-fold predictions through the final
    calibration curve), ``REFERENCE_POINTS`` (201) evenly spaced quantiles (NaN dropped). The
    quantiles stand for the training sample: PSI's bins are its deciles, and KS compares the live
    values with them as a sample of that many points (so the p-value is that of a 201-point
    sample, not inflated by a big training set). Consecutive bars are not independent, so a KS
    p-value on a live window overstates the evidence; PSI is the steadier of the two.

PSI: sum over 10 bins of (live share - training share) x ln(live share / training share), the bins
cut at the training deciles (the outer bins open-ended), an empty bin counted as ``PSI_EPSILON``.
0 for identical distributions; the field's rule of thumb: < 0.1 stable, 0.1-0.2 some shift,
> 0.2 drift. KS: ``scipy.stats.ks_2samp`` (two-sided, exact or asymptotic as scipy picks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROBABILITY",
    "DriftReport",
    "DriftRow",
    "DriftThresholds",
    "drift_report",
    "ks",
    "psi",
    "reference",
]

FloatArray = npt.NDArray[np.float64]
REFERENCE_POINTS = 201
PSI_BINS = 10
PSI_EPSILON = 1e-4  # share given to an empty bin, so ln() stays finite
PROBABILITY = "probability"  # the row of the predicted probability in a report


def _finite(values: Sequence[float] | FloatArray) -> FloatArray:
    array = np.asarray(values, dtype="float64")
    return array[np.isfinite(array)]


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``actual`` against ``expected`` (dimensionless, >= 0), bins
    at the quantiles of ``expected``. ValueError when either has no finite value."""
    base, live = _finite(expected), _finite(actual)
    if not len(base) or not len(live):
        raise ValueError("PSI needs finite values in both samples")
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1))[1:-1])
    # side="right": a value equal to an edge falls in the bin above, in both samples alike.
    base_share = np.bincount(np.searchsorted(edges, base, side="right"), minlength=len(edges) + 1) / len(base)
    live_share = np.bincount(np.searchsorted(edges, live, side="right"), minlength=len(edges) + 1) / len(live)
    base_share = np.maximum(base_share, PSI_EPSILON)
    live_share = np.maximum(live_share, PSI_EPSILON)
    return float(np.sum((live_share - base_share) * np.log(live_share / base_share)))


def ks(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (statistic D in [0, 1], two-sided p-value)."""
    base, live = _finite(expected), _finite(actual)
    if not len(base) or not len(live):
        raise ValueError("KS needs finite values in both samples")
    from scipy.stats import ks_2samp  # about 0.9 s to import: only when a check runs

    result = ks_2samp(base, live)
    return float(result.statistic), float(result.pvalue)


def reference(
    features: Mapping[str, Sequence[float] | FloatArray], probability: Sequence[float] | FloatArray
) -> dict[str, Any]:
    """What a model card keeps of its training window: per feature (and ``probability``) its
    ``REFERENCE_POINTS`` quantiles, rounded to 6 significant digits; None for a column with no
    finite value."""
    grid = np.linspace(0, 1, REFERENCE_POINTS)

    def points(values: Sequence[float] | FloatArray) -> list[float] | None:
        finite = _finite(values)
        return [float(f"{q:.6g}") for q in np.quantile(finite, grid)] if len(finite) else None

    return {
        "points": REFERENCE_POINTS,
        "features": {name: points(values) for name, values in features.items()},
        PROBABILITY: points(probability),
    }


@dataclass(frozen=True)
class DriftThresholds:
    """Drift when PSI is above ``psi`` or the KS p-value below ``ks_p``."""

    psi: float = 0.2
    ks_p: float = 0.01

    def __post_init__(self) -> None:
        if not self.psi > 0:
            raise ValueError(f"the PSI threshold must be above 0, got {self.psi}")
        if not 0 < self.ks_p < 1:
            raise ValueError(f"the KS p-value threshold must be between 0 and 1, got {self.ks_p}")


@dataclass(frozen=True)
class DriftRow:
    name: str  # a feature, or PROBABILITY
    psi: float
    ks: float
    ks_p: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Every compared column; ``skipped``: columns without a reference or live values."""

    model_id: str
    live_rows: int
    thresholds: DriftThresholds
    rows: list[DriftRow]
    skipped: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[DriftRow]:
        return [r for r in self.rows if r.drifted]

    def text(self) -> str:
        if not self.drifted:
            return f"model {self.model_id}: no drift over the last {self.live_rows} bars"
        named = ", ".join(f"{r.name} (PSI {r.psi:.2f}, KS p {r.ks_p:.2g})" for r in self.drifted)
        return (
            f"model {self.model_id}: drift over the last {self.live_rows} bars against its training window "
            f"(PSI > {self.thresholds.psi:g} or KS p < {self.thresholds.ks_p:g}): {named}"
        )


def drift_report(
    model_id: str,
    stored: Mapping[str, Any],
    live: Mapping[str, Sequence[float] | FloatArray],
    live_probability: Sequence[float] | FloatArray,
    thresholds: DriftThresholds = DriftThresholds(),
) -> DriftReport:
    """Compare ``live`` feature columns and probabilities with ``stored`` (``reference``'s dict)."""
    wanted: list[tuple[str, Any, Any]] = [(n, pts, live.get(n)) for n, pts in stored.get("features", {}).items()]
    wanted.append((PROBABILITY, stored.get(PROBABILITY), live_probability))
    rows, skipped = [], []
    for name, points, values in wanted:
        if points is None or values is None or not len(_finite(values)):
            skipped.append(name)
            continue
        index = psi(points, values)
        statistic, p_value = ks(points, values)
        rows.append(DriftRow(name, index, statistic, p_value, index > thresholds.psi or p_value < thresholds.ks_p))
    return DriftReport(model_id, len(np.asarray(live_probability)), thresholds, rows, skipped)
