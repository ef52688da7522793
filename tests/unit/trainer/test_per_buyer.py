"""Per-buyer rows: targets and hits at each k, repeat and new apart, on hand-checked lists."""

import numpy as np
import pandas as pd
import pytest

from trainer import contract, retrieval
from trainer.retrieval import metrics as ev
from trainer.retrieval import per_buyer


def _frame(rows):
    return pd.DataFrame(rows, columns=[contract.BUYER_ID, contract.PRODUCT_ID])


TRAIN = _frame([("a", "p1"), ("a", "p2"), ("b", "p3"), ("c", "p1"), ("c", "p4")])
CATALOG = pd.DataFrame({contract.PRODUCT_ID: ["p1", "p2", "p3", "p4", "p5"]})
# a: p1 (repeat), p3, p5 (new); b: p3 (repeat); c: p2 (new)
TEST = _frame([("a", "p1"), ("a", "p3"), ("a", "p5"), ("b", "p3"), ("c", "p2"), ("z", "p1")])


def _rows(top, ks=(1, 2, 3)):
    es = ev.build_eval_set(TEST, TRAIN, CATALOG)
    seen = retrieval.seen_rows(es, TRAIN, CATALOG)
    return es, per_buyer.per_buyer_rows(np.array(top), es, seen, "m", ks=ks)


def test_counts_targets_and_hits_per_buyer_with_repeat_and_new_apart():
    # catalog rows: p1=0 p2=1 p3=2 p4=3 p5=4
    es, rows = _rows([[0, 4, 1], [3, 2, 0], [-1, 0, 1]])
    assert list(rows[contract.BUYER_ID]) == ["a", "b", "c"]
    assert set(rows[contract.SCORER]) == {"m"}
    assert list(rows["pairs"]) == [3, 1, 1]
    assert list(rows["repeat_pairs"]) == [1, 1, 0]
    assert list(rows["new_pairs"]) == [2, 0, 1]
    assert list(rows["hits_at_1"]) == [1, 0, 0]  # a: p1; c: an empty slot is never a hit
    assert list(rows["hits_at_2"]) == [2, 1, 0]
    assert list(rows["hits_at_3"]) == [2, 1, 1]
    assert list(rows["repeat_hits_at_3"]) == [1, 1, 0]
    assert list(rows["new_hits_at_3"]) == [1, 0, 1]
    for k in (1, 2, 3):
        assert (
            rows[f"repeat_hits_at_{k}"] + rows[f"new_hits_at_{k}"] == rows[f"hits_at_{k}"]
        ).all()


def test_recall_of_the_rows_is_the_micro_averaged_recall():
    top = [[0, 4, 1], [3, 2, 0], [-1, 0, 1]]
    es, rows = _rows(top)
    assert per_buyer.recalls_of(rows, ks=(1, 2, 3)) == ev.recall_at_k(
        np.array(top), es, ks=(1, 2, 3)
    )
    assert per_buyer.recalls_of(rows, ks=(3,), part=contract.REPEAT) == {3: 1.0}
    assert per_buyer.recalls_of(rows, ks=(3,), part=contract.NEW) == {3: pytest.approx(2 / 3)}


def test_the_contract_names_every_column_and_the_counts_are_small_integers():
    _, rows = _rows([[0, 4, 1], [3, 2, 0], [-1, 0, 1]], ks=contract.RECALL_KS)
    assert tuple(rows.columns) == (
        contract.SCORER,
        contract.BUYER_ID,
        *contract.per_buyer_columns(),
    )
    assert all(rows[c].dtype == np.int32 for c in contract.per_buyer_columns())


def test_an_empty_split_has_no_rows_and_nan_recall():
    es = ev.build_eval_set(TEST.iloc[:0], TRAIN, CATALOG)
    rows = per_buyer.per_buyer_rows(np.empty((0, 3), np.int64), es, [], "m", ks=(1, 3))
    assert len(rows) == 0
    assert all(np.isnan(v) for v in per_buyer.recalls_of(rows, ks=(1, 3)).values())


def test_a_long_table_is_tens_of_bytes_per_buyer(tmp_path):
    rng = np.random.default_rng(0)
    buyers = 5000
    frames = []
    for scorer in ("model", "popular", "own_history"):
        data = {contract.SCORER: scorer, contract.BUYER_ID: [f"{12000 + i}" for i in range(buyers)]}
        for column in contract.per_buyer_columns():
            data[column] = rng.integers(0, 30, buyers).astype(np.int32)
        frames.append(pd.DataFrame(data))
    path = per_buyer.write_rows(frames, str(tmp_path / "rows.parquet"))
    size = (tmp_path / "rows.parquet").stat().st_size
    assert size / (3 * buyers) < 40, size  # random counts: the worst case for compression
    back = pd.read_parquet(path)
    assert len(back) == 3 * buyers and set(back[contract.SCORER]) == {
        "model",
        "popular",
        "own_history",
    }
