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
