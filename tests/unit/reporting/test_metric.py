"""Metric names read once: labels, directions (the contract's rule) and the rank metric."""

from __future__ import annotations

import math

import pytest

from reporting import metric
from reporting.metric import RankMetric
from trainer import contract


def test_has_direction():
    for key in ("loss", "val_loss", "val_recall_at_10", "ndcg@10", "auc", "test_precision_at_5"):
        assert metric.has_direction(key), key
    for key in ("lr", "best_epoch", "regularization", "epoch_time_s", "mapping_size"):
        assert not metric.has_direction(key), key


@pytest.mark.parametrize(
    ("name", "lower", "epoch_metric", "lift_k", "columns"),
    [
        ("test_recall_at_100", False, "val_recall_at_100", 100, (10, 50)),
        ("test_recall_at_10", False, "val_recall_at_10", 10, (50, 100)),
        ("final_val_loss", True, "val_loss", 100, (10, 50, 100)),
        ("val_recall_at_50", False, "val_recall_at_50", 50, (10, 50, 100)),
        ("custom_score", False, contract.SELECTION_METRIC, 100, (10, 50, 100)),
    ],
)
def test_rank_metric_is_interpreted_once(name, lower, epoch_metric, lift_k, columns):
    rank = RankMetric.of(name)
    assert rank.name == name and rank.label == metric.label(name)
    assert rank.lower_better is lower
    assert rank.direction_word == ("lower" if lower else "higher")
    assert rank.epoch_metric == epoch_metric
    assert rank.lift_k == lift_k
    # Only the rank metric's own test-recall column is left out, never a validation one.
    assert rank.recall_columns == columns


def test_best_and_better_follow_the_direction():
    assert metric.best_value([2.0, None, 1.0, math.nan], "val_loss") == 1.0
    assert metric.best_value([0.1, 0.3], "test_recall_at_100") == 0.3
    assert metric.best_value([None, math.nan], "loss") is None
    assert metric.better(1.0, 2.0, "loss") and not metric.better(1.0, 2.0, "recall_at_10")


def test_labels_and_formats():
    assert metric.label("test_recall_at_100") == "Test recall@100"
    assert metric.fmt(0.123456) == "0.1235" and metric.fmt(3) == "3"
    assert metric.fmt(None) == "\u2014"
    # Non-finite values are shown as logged, never as "missing".
    assert metric.fmt(math.nan) == "NaN"
    assert (metric.fmt(math.inf), metric.fmt(-math.inf)) == ("inf", "-inf")
    assert metric.present(1.0) and not metric.present(math.inf) and not metric.present(math.nan)
    assert metric.non_finite(-math.inf) and not metric.non_finite(None)
    assert metric.pct(0.0667) == "+6.7%" and metric.pct(-0.5) == "-50.0%"
    assert metric.pct(None) == "\u2014"
