"""trainer/train/calibration.py's choice of the repurchase scale from validation recalls."""

import math

from trainer.train import calibration


def _recalls(at_100: dict[float, float]) -> dict[float, dict[int, float]]:
    return {s: {10: 0.0, 50: 0.0, 100: v} for s, v in at_100.items()}


def test_the_best_recall_at_100_wins():
    assert calibration.choose_scale(_recalls({0.5: 0.30, 1.0: 0.31, 1.5: 0.33, 3.0: 0.32})) == 1.5


def test_ties_go_to_the_factor_nearest_one():
    assert calibration.choose_scale(_recalls({0.5: 0.3, 1.0: 0.3, 2.0: 0.3})) == 1.0
    # 1.25 is nearer 1 than 0.75 (by ratio), and both beat 1.
    assert calibration.choose_scale(_recalls({0.75: 0.32, 1.0: 0.3, 1.25: 0.32})) == 1.25
    # Without 1: the nearest of the best.
    assert calibration.choose_scale(_recalls({0.5: 0.3, 1.5: 0.3, 3.0: 0.2})) == 1.5


def test_a_tie_at_100_goes_to_the_next_k():
    recalls = {
        1.0: {10: 0.1, 50: 0.2, 100: 1.0},
        2.0: {10: 0.1, 50: 0.3, 100: 1.0},
        3.0: {10: 0.5, 50: 0.25, 100: 1.0},
    }
    assert calibration.choose_scale(recalls) == 2.0
    recalls[2.0][50] = 0.25  # a tie at 50 too: 10 decides
    assert calibration.choose_scale(recalls) == 3.0


def test_nan_never_wins_over_a_number():
    nan = math.nan
    assert calibration.choose_scale(_recalls({1.0: nan, 1.5: 0.1, 2.0: nan})) == 1.5
    assert calibration.choose_scale(_recalls({0.5: nan, 1.0: nan})) == 1.0
