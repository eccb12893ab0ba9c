"""Walk-forward splits of a time-ordered series, by bar index, with purge and embargo.

Shared by the backtester (each fold's test window is one out-of-sample backtest) and model training
(each fold trains on its train window, scores on its test window). Layout for ``k`` folds over
``n`` bars::

    [ min_train | purge | test 0 | embargo | test 1 | embargo | ... | test k-1 ]

- Test windows are contiguous, in time order, never overlap, and together cover the series after
  the first ``min_train + purge`` bars except the embargo gaps; the last one takes the remainder.
- Fold i trains on every bar before its test window except the last ``purge`` ones: a label that
  looks ``purge`` bars ahead (a trade's horizon) never reaches into the test window.
- ``embargo`` bars after each test window are tested by no fold: what a fold's last trades leave
  behind (positions, labels over the horizon) does not leak into the next fold's score.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fold:
    """Half-open index ranges: train ``[train_start, train_end)``, test ``[test_start, test_end)``."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def train_bars(self) -> int:
        return self.train_end - self.train_start

    @property
    def test_bars(self) -> int:
        return self.test_end - self.test_start


def walk_forward(n_bars: int, k: int, *, purge: int = 0, embargo: int = 0, min_train: int = 0) -> list[Fold]:
    """``k`` folds over ``n_bars`` bars (see the module's layout). Raises ValueError, saying what
    is wrong, for k < 1, a negative purge / embargo / min_train, or too few bars for one test bar a
    fold."""
    if k < 1:
        raise ValueError(f"walk-forward needs at least 1 fold, got {k}")
    for name, value in (("purge", purge), ("embargo", embargo), ("min_train", min_train)):
        if value < 0:
            raise ValueError(f"{name} must be 0 or more bars, got {value}")
    usable = n_bars - min_train - purge - embargo * (k - 1)
    size = usable // k
    if size < 1:
        raise ValueError(
            f"{n_bars} bars are too few for {k} folds with min_train {min_train}, purge {purge} and embargo "
            f"{embargo}: each fold needs at least one test bar ({min_train + purge + embargo * (k - 1) + k} bars)"
        )
    folds: list[Fold] = []
    test_start = min_train + purge
    for index in range(k):
        test_end = n_bars if index == k - 1 else test_start + size
        folds.append(Fold(index, 0, test_start - purge, test_start, test_end))
        test_start = test_end + embargo
    return folds
