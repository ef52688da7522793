"""Pure view logic on RunRecords built in memory."""

from __future__ import annotations

from reporting import views
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
    rows = {r.key: r for r in views.compare_metrics(runs)}
    assert rows["test_recall_at_100"].best == {0}  # higher is better
    assert rows["val_loss"].best == {1}  # lower is better
    for key in ("lr", "best_epoch", "custom"):  # no direction: no winner
        assert rows[key].best == set(), key


def test_has_direction():
    for key in ("loss", "val_loss", "val_recall_at_10", "ndcg@10", "auc", "test_precision_at_5"):
        assert views.has_direction(key), key
    for key in ("lr", "best_epoch", "regularization", "epoch_time_s", "mapping_size"):
        assert not views.has_direction(key), key
