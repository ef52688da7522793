"""Slices: popularity bands, earlier purchase days, band counts, slice intervals, beyond accuracy."""

import numpy as np
import pandas as pd
import pytest

from trainer import contract, retrieval
from trainer.evaluate import slices
from trainer.retrieval import metrics as ev

DAY = 86_400


def _frame(rows):
    return pd.DataFrame(rows, columns=[contract.BUYER_ID, contract.PRODUCT_ID, contract.TIMESTAMP])


# Train interactions: p1 x5, p2 x3, p3 x1, p4 x1 (10 in all); p5 never bought.
TRAIN = _frame(
    [("a", "p1", 0), ("a", "p1", DAY), ("b", "p1", 0), ("c", "p1", 5 * DAY), ("c", "p1", 5 * DAY)]
    + [("a", "p2", 2 * DAY), ("b", "p2", 0), ("c", "p2", 9 * DAY)]
    + [("a", "p3", 3 * DAY), ("b", "p4", 0)]
)
CATALOG = pd.DataFrame({contract.PRODUCT_ID: ["p1", "p2", "p3", "p4", "p5"]})
TEST = _frame([("a", "p1", 0), ("a", "p5", 0), ("b", "p2", 0), ("b", "p3", 0), ("c", "p4", 0)])


def test_popularity_bands_by_the_share_of_train_interactions_above_each_product():
    pop = retrieval.popularity(TRAIN, CATALOG)
    # p1 holds 50%: nothing above it (head); 50% above p2 (the tail starts there), p3, p4.
    assert list(pop.rank) == [1, 2, 3, 4, 5]
    parts = [contract.POPULARITY_PARTS[b] for b in pop.band]
    assert parts == ["head", "tail", "tail", "tail", "tail"]
    train = _frame([(f"b{i}", p, 0) for i, p in enumerate(["p1"] * 15 + ["p2"] * 2 + ["p3"] * 3)])
    pop = retrieval.popularity(train, CATALOG)
    assert [contract.POPULARITY_PARTS[b] for b in pop.band] == [
        "head",  # 0% above
        "tail",  # p2: 85% above (ranked third by 2 interactions)
        "tail",  # p3: 75% above
        "tail",
        "tail",  # never bought
    ]
    assert list(pop.rank) == [1, 3, 2, 4, 5]
    train = _frame([(f"b{i}", p, 0) for i, p in enumerate(["p1"] * 3 + ["p2"] * 3 + ["p3"] * 4)])
    pop = retrieval.popularity(train, CATALOG)
    # p3 (40%): 0% above, head; p1 or p2 (30% each, catalog order): p1 40% above, torso; p2
    # 70% above, tail.
    assert [contract.POPULARITY_PARTS[b] for b in pop.band] == [
        "torso",
        "tail",
        "head",
        "tail",
        "tail",
    ]


def test_earlier_purchase_days_count_distinct_days_before_the_split():
    es = ev.build_eval_set(TEST, TRAIN, CATALOG)
    # a: days 0, 1, 2, 3; b: day 0; c: days 5, 9
    assert list(retrieval.earlier_days(es, TRAIN)) == [4, 1, 2]


def _rows(top, scorer="m"):
    es = ev.build_eval_set(TEST, TRAIN, CATALOG)
    seen = retrieval.seen_rows(es, TRAIN, CATALOG)
    pop = retrieval.popularity(TRAIN, CATALOG)
    days = retrieval.earlier_days(es, TRAIN)
    rows = retrieval.per_buyer_rows(
        np.array(top), es, seen, scorer, ks=(1, 2), band=pop.band, earlier_days=days
    )
    return rows


def test_band_columns_split_each_buyers_targets_and_hits():
    # catalog rows: p1=0 (head) p2=1 p3=2 p4=3 p5=4 (tail)
    rows = _rows([[0, 1], [2, -1], [1, 3]])
    assert set(contract.band_columns((1, 2))) <= set(rows.columns)
    assert list(rows[contract.EARLIER_DAYS]) == [4, 1, 2]
    assert list(rows["head_pairs"]) == [1, 0, 0]
    assert list(rows["tail_pairs"]) == [1, 2, 1]
    assert list(rows["head_hits_at_1"]) == [1, 0, 0]
    assert list(rows["tail_hits_at_2"]) == [0, 1, 1]
    for k in (1, 2):
        parts = sum(rows[contract.hits_column(k, p)] for p in contract.POPULARITY_PARTS)
        assert list(parts) == list(rows[contract.hits_column(k)])
    assert all(rows[c].dtype == np.int32 for c in contract.band_columns((1, 2)))


def _big_rows(seed=0, n=3000):
    """Rows of a model and a baseline on n buyers with every band column at SLICE_K."""
    rng = np.random.default_rng(seed)
    k = contract.SLICE_K
    out = {}
    parts = {p: rng.integers(0, 6, n) for p in (*contract.POPULARITY_PARTS,)}
    repeat = np.minimum(parts["head"], rng.integers(0, 3, n))
    pairs = sum(parts.values())
    days = rng.integers(1, 15, n)
    for scorer, rate in ((contract.SCORER_MODEL, 0.4), (contract.BASELINE_POPULAR, 0.2)):
        frame = {contract.BUYER_ID: [f"b{i}" for i in range(n)], contract.EARLIER_DAYS: days}
        hits = {p: rng.binomial(c, rate) for p, c in parts.items()}
        frame[contract.pairs_column()] = pairs
        frame[contract.hits_column(k)] = sum(hits.values())
        for p, c in parts.items():
            frame[contract.pairs_column(p)] = c
            frame[contract.hits_column(k, p)] = hits[p]
        rep_hits = np.minimum(repeat, hits["head"])
        frame[contract.pairs_column(contract.REPEAT)] = repeat
        frame[contract.hits_column(k, contract.REPEAT)] = rep_hits
        frame[contract.pairs_column(contract.NEW)] = pairs - repeat
        frame[contract.hits_column(k, contract.NEW)] = frame[contract.hits_column(k)] - rep_hits
        out[scorer] = pd.DataFrame(frame)
    return out


def test_slice_metrics_are_the_slices_sums_with_intervals_around_them():
    rows = _big_rows()
    got = slices.slice_metrics(rows)
    k = contract.SLICE_K
    model, base = rows[contract.SCORER_MODEL], rows[contract.BASELINE_POPULAR]
    tail = contract.slice_recall_key("tail", k)
    assert got[tail] == pytest.approx(model[f"tail_hits_at_{k}"].sum() / model["tail_pairs"].sum())
    assert got[contract.ci_low_key(tail)] < got[tail] < got[contract.ci_high_key(tail)]
    busy = model[model[contract.EARLIER_DAYS] >= 10]
    key = contract.slice_recall_key("days_10_plus", k)
    assert got[key] == pytest.approx(busy[f"hits_at_{k}"].sum() / busy["pairs"].sum())
    assert got[contract.slice_pairs_key("days_10_plus")] == busy["pairs"].sum()
    lift = contract.slice_lift_key(contract.NEW, contract.BASELINE_POPULAR, k)
    new_base = base[f"new_hits_at_{k}"].sum() / base["new_pairs"].sum()
    assert got[lift] == pytest.approx(got[contract.slice_recall_key(contract.NEW, k)] - new_base)
    assert got[contract.ci_low_key(lift)] > 0  # 0.4 against 0.2 on thousands of pairs
    # Every slice, for the model and the baseline, and nothing for the selected model.
    for name, _, _ in contract.SLICES:
        assert contract.slice_recall_key(name, k, contract.BASELINE_POPULAR) in got
        assert contract.slice_lift_key(name, contract.BASELINE_POPULAR, k) in got
    # One bootstrap for all slices gives each what a bootstrap of it alone gives.
    alone = retrieval.paired_bootstrap(
        model["tail_pairs"].to_numpy(),
        {
            contract.SCORER_MODEL: model[[f"tail_hits_at_{k}"]].to_numpy(),
            contract.BASELINE_POPULAR: base[[f"tail_hits_at_{k}"]].to_numpy(),
        },
        contract.SCORER_MODEL,
        (k,),
    )
    assert got[contract.ci_high_key(tail)] == alone.recall[contract.SCORER_MODEL][k].high


def test_rows_without_band_columns_give_the_repeat_and_new_slices_only():
    band = set(contract.band_columns())
    rows = {s: f.drop(columns=[c for c in f.columns if c in band]) for s, f in _big_rows().items()}
    got = slices.slice_metrics(rows)
    assert contract.slice_recall_key(contract.NEW, contract.SLICE_K) in got
    assert contract.slice_recall_key("tail", contract.SLICE_K) not in got


def test_beyond_accuracy_of_top_k_lists():
    pop = retrieval.popularity(TRAIN, CATALOG)  # ranks 1..5, p1 head, the rest tail
    top = np.array([[0, 1], [0, 4], [0, -1]])
    got = retrieval.beyond_accuracy(top, pop, ks=(1, 2))
    assert got[contract.BEYOND_COVERAGE] == {1: 1 / 5, 2: 3 / 5}
    assert got[contract.BEYOND_POPULARITY_RANK] == {
        1: 1.0,
        2: pytest.approx((1 + 2 + 1 + 5 + 1) / 5),
    }
    assert got[contract.BEYOND_TAIL_SHARE] == {1: 0.0, 2: pytest.approx(2 / 5)}
    # Named by the contract at each k (a list shorter than k counts whole).
    named = slices.beyond_metrics({contract.SCORER_MODEL: top, "popular": top[:, :1]}, pop)
    assert named[contract.beyond_key(contract.BEYOND_COVERAGE, 10)] == 3 / 5
    assert named["baseline_popular_coverage_at_100"] == 1 / 5
    assert named["test_tail_share_at_10"] == pytest.approx(2 / 5)
