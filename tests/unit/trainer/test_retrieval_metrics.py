"""Exact recall@k and the baselines on hand-checked frames."""

import numpy as np
import pandas as pd

from trainer import contract
from trainer.retrieval import metrics as ev
from trainer.retrieval import topk


def _frame(rows):
    return pd.DataFrame(rows, columns=[contract.BUYER_ID, contract.PRODUCT_ID])


TRAIN = _frame(
    [("a", "p1"), ("a", "p1"), ("a", "p2"), ("b", "p3"), ("b", "p3"), ("c", "p1"), ("c", "p4")]
)
CATALOG = pd.DataFrame({contract.PRODUCT_ID: ["p1", "p2", "p3", "p4"]})


def test_eval_set_keeps_distinct_pairs_of_known_buyers_and_products():
    test = _frame([("a", "p2"), ("a", "p2"), ("a", "p4"), ("b", "p9"), ("z", "p1"), ("b", "p1")])
    es = ev.build_eval_set(test, TRAIN, CATALOG)
    assert list(es.buyers) == ["a", "b"]
    assert es.num_pairs == 3  # (a,p2) once, (a,p4), (b,p1); p9 and buyer z are unknown
    assert [list(p) for p in es.positives] == [[1, 3], [0]]


def test_recall_at_k_is_micro_averaged_over_pairs():
    es = ev.EvalSet(
        buyers=np.array(["a", "b"]), positives=[np.array([1, 3]), np.array([0])], num_pairs=3
    )
    top = np.array([[3, 0, 2, 1], [2, 1, 3, 0]])
    assert ev.recall_at_k(top, es, ks=(1, 2, 4)) == {1: 1 / 3, 2: 1 / 3, 4: 1.0}


def test_exact_top_k_orders_by_inner_product():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    candidates = np.array([[0.5, 0.0], [2.0, 0.1], [0.0, 3.0], [1.0, 1.0]], np.float32)
    idx, scores = topk.exact_top_k(queries, candidates, k=3, batch_size=1)
    assert idx.tolist() == [[1, 3, 0], [2, 3, 1]]
    np.testing.assert_allclose(scores[0], [2.0, 1.0, 0.5])


def test_baselines_rank_popular_and_own_history_first():
    test = _frame([("a", "p3"), ("b", "p3"), ("c", "p4")])
    es = ev.build_eval_set(test, TRAIN, CATALOG)
    popular = ev.most_popular_top_k(es, TRAIN, CATALOG, 2)
    assert popular.tolist() == [[0, 2]] * 3  # p1 and p3 bought 3 and 2 times
    own = ev.own_history_top_k(es, TRAIN, CATALOG, 3)
    # a: p1 (twice), p2, then popular fill p3; b: p3 then p1, p2; c: p1, p4 (tie -> popularity)
    assert own.tolist() == [[0, 1, 2], [2, 0, 1], [0, 3, 2]]
    recalls = ev.baseline_recalls(es, TRAIN, CATALOG, ks=(1, 2))
    assert recalls["own_history"] == {1: 1 / 3, 2: 2 / 3}
    assert recalls["popular"] == {1: 0.0, 2: 2 / 3}


def test_exclude_seen_drops_earlier_pairs_and_empty_slots_never_hit():
    test = _frame([("a", "p1"), ("a", "p3"), ("b", "p3"), ("b", "p4"), ("c", "p2")])
    es = ev.build_eval_set(test, TRAIN, CATALOG, seen=TRAIN)
    # (a, p1) and (b, p3) were bought before: only the new pairs are evaluated.
    assert list(es.buyers) == ["a", "b", "c"] and es.num_pairs == 3
    assert [list(p) for p in es.positives] == [[2], [3], [1]]
    top = np.array([[2, -1], [-1, -1], [-1, 1]])  # -1: an empty slot
    assert ev.recall_at_k(top, es, ks=(1, 2)) == {1: 1 / 3, 2: 2 / 3}


def test_exclude_seen_baselines_skip_each_buyers_items_and_leave_out_own_history():
    test = _frame([("a", "p3"), ("b", "p4"), ("c", "p2")])
    es = ev.build_eval_set(test, TRAIN, CATALOG, seen=TRAIN)
    popular = ev.most_popular_top_k(es, TRAIN, CATALOG, 3, exclude_seen=True)
    # Popularity p1 > p3 > p2 = p4 (catalog order on ties); a had p1, p2; b p3; c p1, p4.
    assert popular.tolist() == [[2, 3, -1], [0, 1, 3], [2, 1, -1]]
    seen = ev.seen_rows(es, TRAIN, CATALOG)
    assert not any(set(row) & set(s) for row, s in zip(popular.tolist(), seen, strict=True))
    recalls = ev.baseline_recalls(es, TRAIN, CATALOG, ks=(1, 3), exclude_seen=True)
    assert set(recalls) == {contract.BASELINE_POPULAR}  # own history: not applicable
    assert recalls[contract.BASELINE_POPULAR] == {1: 1 / 3, 3: 1.0}
    assert contract.applicable_baselines(True) == (
        contract.BASELINE_POPULAR,
        contract.BASELINE_EASE,
        contract.BASELINE_ITEM_KNN,
    )
    assert contract.applicable_baselines(False) == (
        contract.BASELINE_POPULAR,
        contract.BASELINE_OWN_HISTORY,
        contract.BASELINE_TIFU_KNN,
    )
