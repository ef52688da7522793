"""Pure view logic on RunRecords built in memory."""

from __future__ import annotations

from reporting import aggregate
from reporting.metric import RankMetric
from reporting.records import RunRecord


def _run(name: str, **metrics: float) -> RunRecord:
    return RunRecord(
        name * 4, name, "FINISHED", 0, None, {}, {}, metrics, dict.fromkeys(metrics, 0)
    )


def test_best_is_marked_only_where_it_means_something():
    runs = [
        _run("a", test_recall_at_100=0.3, val_loss=1.2, lr=0.1, best_epoch=3.0, custom=5.0),
        _run("b", test_recall_at_100=0.2, val_loss=1.1, lr=0.2, best_epoch=7.0, custom=9.0),
    ]
    rows = {r.key: r for r in aggregate.compare_metrics(runs)}
    assert rows["test_recall_at_100"].best == {0}  # higher is better
    assert rows["val_loss"].best == {1}  # lower is better
    for key in ("lr", "best_epoch", "custom"):  # no direction: no winner
        assert rows[key].best == set(), key


def test_leaderboard_ranks_by_the_rank_metric_direction_with_ties_sharing_a_rank():
    runs = [
        _run("a", final_val_loss=1.0, test_recall_at_100=0.3),
        _run("b", final_val_loss=0.5, test_recall_at_100=0.3),
        _run("c", test_recall_at_100=0.1),
    ]
    by_loss = aggregate.leaderboard(runs, RankMetric.of("final_val_loss"))
    assert [(r.rank, r.run.name) for r in by_loss] == [(1, "b"), (2, "a"), (None, "c")]
    by_recall = aggregate.leaderboard(runs, RankMetric.of("test_recall_at_100"))
    assert [r.rank for r in by_recall] == [1, 1, 3]
    assert by_recall[2].run.name == "c"


def test_metric_value_is_the_logged_value_or_none():
    run = _run("a", loss=float("nan"), val_loss=1.5)
    assert aggregate.metric_value(run, "val_loss") == 1.5
    assert aggregate.metric_value(run, "loss") is None
    assert aggregate.metric_value(run, "absent") is None


def test_a_heatmap_cell_counts_seeds_and_buyer_sampling():
    import math

    import pytest

    from reporting.aggregate import cell_half, heatmap
    from reporting.records import RunRecord

    # One run: its own interval. Three seeds with intervals of half-width 0.01: t(2) x sd /
    # sqrt(3) for the seeds, 0.01 for the buyers (the same buyers: not divided by n).
    assert cell_half([0.3], [(0.29, 0.31)]) == (pytest.approx(0.01), True)
    values = [0.30, 0.31, 0.32]
    half, buyers = cell_half(values, [(v - 0.01, v + 0.01) for v in values])
    seeds = 4.303 * 0.01 / math.sqrt(3)
    assert buyers and half == pytest.approx(math.hypot(seeds, 0.01))
    # A run without an interval: the seeds only, said so.
    assert cell_half(values, [None, (0.3, 0.32), None]) == (pytest.approx(seeds), False)
    assert cell_half([0.3], [None]) == (None, False)

    def run(name, value):
        metrics = {"m": value}
        return RunRecord(name, name, "FINISHED", 0, None, {}, {}, metrics, {})

    hm = heatmap([run("a", 0.30), run("b", 0.32)], "m", lambda r, v: (v - 0.02, v + 0.02))
    (cell,) = hm.cells.values()
    assert cell.n == 2 and cell.buyers
    assert cell.half == pytest.approx(math.hypot(12.706 * cell.std / math.sqrt(2), 0.02))
