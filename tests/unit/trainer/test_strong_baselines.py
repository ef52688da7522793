"""TIFU-KNN, EASE and item-kNN on small hand-made purchase logs, and their tuning on validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer import contract, retrieval
from trainer.retrieval import strong

DAY = strong.SECONDS_PER_DAY


def log(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(buyer, product, day) rows as ingest writes them."""
    return pd.DataFrame(
        {
            contract.BUYER_ID: [r[0] for r in rows],
            contract.PRODUCT_ID: [r[1] for r in rows],
            contract.TIMESTAMP: [r[2] * DAY for r in rows],
        }
    )


CATALOG = pd.DataFrame({contract.PRODUCT_ID: ["p0", "p1", "p2", "p3"]})


def test_tifu_vectors_weigh_baskets_and_groups_as_the_paper_does():
    # Four baskets (days 1-4) of one buyer, groups of 2 from the most recent: {3, 4}, {1, 2}.
    history = log([("a", "p0", 1), ("a", "p1", 2), ("a", "p0", 3), ("a", "p2", 4)])
    v = strong.tifu_vectors(history, CATALOG, np.array(["a"], object), 2, 0.5, 0.25)
    # Recent group: day 4 weight 1, day 3 weight 0.5, mean over 2; older group x 0.25, same
    # inside; the buyer's vector is the mean over the 2 groups.
    expected = np.zeros(4)
    expected[2] += 1.0 / 2 / 2
    expected[0] += 0.5 / 2 / 2
    expected[1] += 0.25 * 1.0 / 2 / 2
    expected[0] += 0.25 * 0.5 / 2 / 2
    np.testing.assert_allclose(v.toarray()[0], expected, rtol=1e-6)


def test_tifu_knn_ranks_own_repeats_first_and_borrows_from_neighbours():
    history = log(
        [("a", "p0", 1), ("a", "p0", 2), ("a", "p1", 2),
         ("b", "p0", 1), ("b", "p3", 1), ("c", "p2", 1)]
    )  # fmt: skip
    queries = retrieval.EvalSet(np.array(["a"], object), [np.array([0])], 1)
    own = strong.tifu_knn_top_k(
        queries, history, CATALOG, 4,
        {"group_size": 3, "basket_decay": 1.0, "group_decay": 1.0, "neighbours": 1, "alpha": 1.0},
    )  # fmt: skip
    assert own[0, :2].tolist() == [0, 1]  # p0 bought twice, then p1
    near = strong.tifu_knn_top_k(
        queries, history, CATALOG, 4,
        {"group_size": 3, "basket_decay": 1.0, "group_decay": 1.0, "neighbours": 1, "alpha": 0.0},
    )  # fmt: skip
    # Only the nearest buyer (b shares p0) counts: p0 and p3 lead, p2 (c's) does not.
    assert set(near[0, :2].tolist()) == {0, 3}


def test_ease_is_the_closed_form_and_never_recommends_what_was_bought():
    history = log(
        [("a", "p0", 1), ("a", "p1", 1), ("b", "p0", 1), ("b", "p1", 1), ("b", "p2", 1),
         ("c", "p1", 1), ("c", "p2", 1), ("d", "p3", 1)]
    )  # fmt: skip
    buyers = np.array(["a", "b", "c", "d"], object)
    x = strong.buyer_matrix(history, CATALOG, buyers).toarray().astype(np.float64)
    gram = x.T @ x + 10.0 * np.eye(4)
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    got = strong._item_matrix(strong.buyer_matrix(history, CATALOG, buyers), "ease", {"l2": 10.0})
    np.testing.assert_allclose(got, b, rtol=1e-5, atol=1e-7)
    queries = retrieval.EvalSet(np.array(["a"], object), [np.array([2])], 1)
    top = strong.item_model_top_k(queries, history, CATALOG, 4, {"l2": 10.0}, True, "ease")
    assert top[0, 0] == 2  # p2: bought with p0 and p1 by b
    assert not {0, 1} & set(top[0].tolist())  # a's own products are excluded (-1 slots)
    assert (top[0] == -1).sum() == 2


def test_item_knn_takes_over_above_the_size_where_ease_does_not_fit(monkeypatch):
    assert strong.item_baseline(strong.EASE_MAX_ITEMS) == contract.BASELINE_EASE
    assert strong.item_baseline(strong.EASE_MAX_ITEMS + 1) == contract.BASELINE_ITEM_KNN
    history = log([("a", "p0", 1), ("a", "p1", 1), ("b", "p0", 1), ("b", "p1", 1), ("c", "p0", 1)])
    queries = retrieval.EvalSet(np.array(["c"], object), [np.array([1])], 1)
    top = strong.item_model_top_k(queries, history, CATALOG, 2, {"neighbours": 1}, True, "item_knn")
    assert top[0, 0] == 1  # p1 is p0's nearest product


def _windows(seed: int):
    """Train / eval / test logs where buyers re-buy what they bought most recently."""
    rng = np.random.default_rng(seed)
    rows = {"train": [], "eval": [], "test": []}
    for b in range(60):
        favourites = rng.choice(4, size=2, replace=False)
        for day in range(1, 9):
            rows["train"].append((f"b{b}", f"p{favourites[day % 2]}", day))
        rows["eval"].append((f"b{b}", f"p{favourites[0]}", 20))
        rows["test"].append((f"b{b}", f"p{favourites[1]}", 30))
    return {k: log(v) for k, v in rows.items()}


def test_strong_baselines_are_chosen_on_validation_and_score_both_windows():
    frames = _windows(0)
    lists, record = strong.strong_baselines(
        frames["train"], frames["eval"], frames["test"], CATALOG, exclude_seen=False
    )
    assert record["baseline"] == contract.BASELINE_TIFU_KNN
    assert len(record["grid"]) == len(strong._points(strong.TIFU_GRID))
    assert record["val_recall"] == max(g["val_recall"] for g in record["grid"])
    assert set(lists["split"]) == {"val", "test"} and len(lists) == 120
    # The test window never decides: another test split, the same choice.
    other = frames["test"].assign(**{contract.PRODUCT_ID: "p3"})
    _, again = strong.strong_baselines(frames["train"], frames["eval"], other, CATALOG, False)
    assert again["params"] == record["params"]
    test_set = retrieval.build_eval_set(frames["test"], frames["train"], CATALOG)
    top = retrieval.precomputed_top_k(lists, "test", test_set.buyers)[contract.BASELINE_TIFU_KNN]
    assert top.shape == (60, 4)
    assert retrieval.recall_at_k(top, test_set, (2,))[2] == 1.0  # both favourites lead
    # A buyer the lists do not hold: the baseline is left out rather than misaligned.
    assert retrieval.precomputed_top_k(lists, "test", np.array(["nobody"], object)) == {}


def test_exclude_seen_domains_get_ease_and_too_many_buyers_are_skipped_saying_why():
    frames = _windows(1)
    _, record = strong.strong_baselines(
        frames["train"], frames["eval"], frames["test"], CATALOG, exclude_seen=True
    )
    assert record["baseline"] == contract.BASELINE_EASE and "l2" in record["params"]
    lists, skipped = strong.strong_baselines(
        frames["train"], frames["eval"], frames["test"], CATALOG, False, max_buyers=10
    )
    assert lists.empty and "60 train buyers" in skipped["skipped"]


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_applicable_baselines_hold_the_domains_strong_one(exclude_seen):
    expected = contract.BASELINE_EASE if exclude_seen else contract.BASELINE_TIFU_KNN
    assert expected in contract.applicable_baselines(exclude_seen)


def _wide_catalog(n):
    return pd.DataFrame({contract.PRODUCT_ID: [f"p{i}" for i in range(n)]})


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_the_lists_run_past_max_k_with_their_scores_for_the_ranking_stage(exclude_seen):
    # 130 products: the baseline is its top 100, the candidates the whole 130-long list.
    rng = np.random.default_rng(4)
    catalog = _wide_catalog(130)
    rows = {"train": [], "eval": [], "test": []}
    for b in range(30):
        for day, split in ((1, "train"), (2, "train"), (20, "eval"), (30, "test")):
            for p in rng.choice(130, 8, replace=False):
                rows[split].append((f"b{b}", f"p{p}", day))
    frames = {k: log(v) for k, v in rows.items()}
    lists, _ = strong.strong_baselines(
        frames["train"], frames["eval"], frames["test"], catalog, exclude_seen
    )
    name = strong.item_baseline(130) if exclude_seen else contract.BASELINE_TIFU_KNN
    buyers = np.array(sorted(set(frames["test"][contract.BUYER_ID])), dtype=object)
    top = retrieval.precomputed_top_k(lists, "test", buyers)[name]
    whole = retrieval.precomputed_top_k(lists, "test", buyers, width=0)[name]
    scores = retrieval.precomputed_top_k(lists, "test", buyers, 0, "scores")[name]
    assert top.shape == (30, 100) and whole.shape == (30, 130) == scores.shape
    np.testing.assert_array_equal(whole[:, :100], top)
    filled = whole >= 0
    assert (np.isnan(scores) == ~filled).all()  # a score for every product listed
    assert all((np.diff(s[f]) <= 0).all() for s, f in zip(scores, filled, strict=True))
    if exclude_seen:  # what a buyer bought before is never listed, not even as a candidate
        seen = retrieval.seen_rows(
            retrieval.EvalSet(buyers, [], 0), pd.concat([frames["train"], frames["eval"]]), catalog
        )
        assert all(not np.isin(s, w[w >= 0]).any() for s, w in zip(seen, whole, strict=True))
