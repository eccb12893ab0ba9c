"""Walk-forward folds: in time order, never overlapping, purge and embargo respected."""

from __future__ import annotations

import itertools

import pytest

from tools.splits import Fold, walk_forward


@pytest.mark.parametrize(
    ("n", "k", "purge", "embargo", "min_train"),
    [(100, 1, 0, 0, 0), (100, 4, 0, 0, 0), (100, 4, 5, 3, 20), (1000, 7, 48, 48, 100), (37, 3, 2, 4, 1)],
)
def test_folds_are_ordered_disjoint_and_keep_purge_and_embargo(
    n: int, k: int, purge: int, embargo: int, min_train: int
) -> None:
    folds = walk_forward(n, k, purge=purge, embargo=embargo, min_train=min_train)
    assert [f.index for f in folds] == list(range(k))
    assert folds[0].test_start == min_train + purge
    assert folds[-1].test_end == n  # the last fold takes the remainder
    for fold in folds:
        assert 0 <= fold.train_start <= fold.train_end <= fold.test_start < fold.test_end <= n
        assert fold.test_start - fold.train_end == purge  # the purged bars belong to neither
    for a, b in itertools.pairwise(folds):
        assert a.test_end + embargo == b.test_start  # the embargo gap, then the next test window
    tested = [i for f in folds for i in range(f.test_start, f.test_end)]
    assert len(tested) == len(set(tested)), "no bar is tested twice"
    # No fold trains on a bar its own test window (or the purge before it) holds.
    for fold in folds:
        assert fold.train_end <= fold.test_start - purge


def test_known_layout() -> None:
    # 100 bars, 3 folds, min_train 10, purge 2, embargo 3: (100 - 10 - 2 - 6) // 3 = 27 bars a fold.
    assert walk_forward(100, 3, purge=2, embargo=3, min_train=10) == [
        Fold(0, 0, 10, 12, 39),
        Fold(1, 0, 40, 42, 69),
        Fold(2, 0, 70, 72, 100),
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((100, 0), {}, "at least 1 fold"),
        ((100, 2), {"purge": -1}, "purge must be 0 or more"),
        ((100, 2), {"embargo": -1}, "embargo must be 0 or more"),
        ((10, 4), {"embargo": 3}, "too few for 4 folds"),
    ],
)
def test_bad_parameters_say_what_is_wrong(args: tuple[int, int], kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        walk_forward(*args, **kwargs)
