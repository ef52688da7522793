"""The ranking stage (trainer/rank): its candidates, their features, the fit and the decision."""

import numpy as np
import pandas as pd
import pytest

from trainer import contract, rank, retrieval
from trainer.rank import features, stage

DAY = 86_400
START = 1_700_006_400  # midnight UTC: day numbers are timestamp // DAY


def _catalog(n):
    return pd.DataFrame({contract.PRODUCT_ID: [f"p{i}" for i in range(n)]})


def _rows(*events):
    """Interactions from (buyer, product row, day) triples."""
    return pd.DataFrame(
        {
            contract.BUYER_ID: [str(b) for b, _, _ in events],
            contract.PRODUCT_ID: [f"p{p}" for _, p, _ in events],
            contract.TIMESTAMP: [START + d * DAY for _, _, d in events],
        }
    )


def test_candidates_are_the_union_of_both_lists_with_their_ranks():
    candidates = rank.Candidates(
        buyers=np.array(["a", "b"], dtype=object),
        retrieval_rows=np.array([[3, 1, -1], [0, 2, 4]]),
        retrieval_scores=np.array([[0.9, 0.5, 0.0], [0.7, 0.6, 0.1]]),
        strong_rows=np.array([[1, 4], [5, 0]]),
        strong_scores=np.array([[0.8, 0.2], [0.3, 0.1]]),
    )
    past = rank.history(_rows(("a", 1, 0)), _catalog(6), START + DAY, 30)
    frame = rank.candidate_frame(candidates, past)
    got = {
        (q, r): (rr, sr, ss)
        for q, r, rr, sr, ss in frame[
            [features.QUERY, features.ROW, "retrieval_rank", "strong_rank", "strong_score"]
        ].itertuples(index=False)
    }
    # Query a: 3 and 1 retrieved (the empty slot dropped), 1 and 4 from the strong list;
    # absent from a list: one past its end (rank 4 of a 3-wide list, 3 of a 2-wide one).
    assert got.keys() == {(0, 1), (0, 3), (0, 4), (1, 0), (1, 2), (1, 4), (1, 5)}
    assert got[(0, 1)] == (2.0, 1.0, pytest.approx(0.8))
    assert got[(0, 3)][:2] == (1.0, 3.0) and np.isnan(got[(0, 3)][2])
    assert got[(0, 4)] == (4.0, 2.0, pytest.approx(0.2))
    assert got[(1, 5)] == (4.0, 1.0, pytest.approx(0.3))
    gap = frame.set_index([features.QUERY, features.ROW])["retrieval_gap"]
    assert gap[(0, 1)] == pytest.approx(0.5 - 0.9) and gap[(1, 0)] == 0.0
    assert list(frame.columns[3:]) == list(rank.FEATURES)


def test_history_features_count_days_as_of_the_split_start():
    # Buyer a bought product 0 on days 0 and 10 (twice on day 10), product 1 on day 4;
    # buyer b bought product 0 on days 2 and 8. The split starts on day 20; the window is 8.
    before = _rows(("a", 0, 0), ("a", 0, 10), ("a", 0, 10), ("a", 1, 4), ("b", 0, 2), ("b", 0, 8))
    candidates = rank.Candidates(
        np.array(["a"], dtype=object), np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]])
    )
    frame = rank.candidate_frame(candidates, rank.history(before, _catalog(3), START + 20 * DAY, 8))
    f = frame.set_index(features.ROW)
    assert f.loc[0, "buyer_item_days"] == 2 and f.loc[1, "buyer_item_days"] == 1
    assert f.loc[0, "days_since_item"] == 10 and f.loc[0, "days_since_first_item"] == 20
    assert f.loc[0, "buyer_days"] == 3  # days 0, 4, 10
    assert f.loc[0, "item_share_of_days"] == pytest.approx(2 / 3)
    assert f.loc[0, "days_since_buyer"] == 10 and f.loc[0, "buyer_span_days"] == 10
    assert f.loc[0, "buyer_gap_days"] == pytest.approx(5.0)  # 10 days over 2 gaps
    assert f.loc[0, "buyer_due"] == pytest.approx(2.0)
    # Product 0: both buyers bought it again; gaps 10 (a) and 6 (b), median 8.
    assert f.loc[0, "item_repeat_rate"] == 1.0 and f.loc[0, "item_gap_days"] == 8.0
    assert f.loc[0, "item_due"] == pytest.approx(10 / 8)
    assert f.loc[0, "item_buyer_share"] == 1.0 and f.loc[1, "item_buyer_share"] == 0.5
    # The last 8 days (12..19) hold nobody; the product bought by nobody is 0, never NaN.
    assert f.loc[0, "item_recent_share"] == 0.0 and f.loc[2, "item_buyer_share"] == 0.0
    assert f.loc[2, "seen"] == 0.0 and np.isnan(f.loc[2, "buyer_item_days"])
    assert np.isnan(f.loc[2, "item_trend"])  # bought by nobody: no trend
    assert np.isnan(f.loc[1, "item_gap_days"])  # nobody bought product 1 twice


def test_recent_shares_count_the_active_buyers_of_the_window():
    before = _rows(("a", 0, 18), ("b", 1, 19), ("c", 1, 1), ("d", 0, 2))
    candidates = rank.Candidates(
        np.array(["a"], dtype=object), np.array([[0, 1]]), np.array([[1.0, 0.5]])
    )
    frame = rank.candidate_frame(candidates, rank.history(before, _catalog(2), START + 20 * DAY, 8))
    f = frame.set_index(features.ROW)
    # Two buyers were active in days 12..19 (a, b): each product has one of them.
    assert f.loc[0, "item_recent_share"] == 0.5 and f.loc[1, "item_recent_share"] == 0.5
    assert f.loc[0, "item_buyer_share"] == 0.5
    assert f.loc[0, "item_trend"] == pytest.approx(1.0)


def test_labels_mark_the_candidates_bought_in_the_split():
    frame = pd.DataFrame({features.QUERY: [0, 0, 1, 1], features.ROW: [3, 5, 3, 7]})
    got = rank.with_labels(frame, [np.array([5, 9]), np.array([3])])
    assert got[features.LABEL].tolist() == [False, True, True, False]


def test_the_window_is_the_split_length_in_days():
    split = pd.DataFrame({contract.TIMESTAMP: [START, START + 30 * DAY + 5]})
    assert rank.window_days(split) == 31
    assert rank.window_days(split.iloc[:0]) == 1


def test_top_lists_order_by_score_and_break_ties_by_retrieval_rank():
    frame = pd.DataFrame(
        {
            features.QUERY: [0, 0, 0, 1],
            features.ROW: [4, 5, 6, 2],
            "retrieval_rank": [2.0, 1.0, 3.0, 1.0],
        }
    )
    rows, scores = rank.top_lists(frame, np.array([0.5, 0.5, 0.9, 0.1]), 3, 2)
    assert rows.tolist() == [[6, 5], [2, -1], [-1, -1]]
    assert scores[0].tolist() == [0.9, 0.5] and scores[1, 1] == -np.inf


def test_folds_are_a_stable_hash_of_the_buyer():
    buyers = np.array([f"buyer-{i}" for i in range(200)], dtype=object)
    fold = stage.fold_of(buyers)
    assert set(fold) == {0, 1} and 60 < fold.sum() < 140
    np.testing.assert_array_equal(fold, stage.fold_of(buyers[::-1])[::-1])


def _synthetic(buyers, seed, informative=True):
    """A split where what a buyer takes follows ``buyer_item_days``, not the retrieval order.

    Each buyer has 12 candidates; the retrieval stage ranks them at random. A candidate bought
    on more earlier days is more likely bought again (informative), or not at all (not).
    """
    rng = np.random.default_rng(seed)
    rows, positives = [], []
    for q in range(buyers):
        items = rng.choice(40, 12, replace=False)
        days = rng.integers(0, 6, 12).astype(float)
        p = 0.05 + 0.15 * days if informative else np.full(12, 0.3)
        bought = rng.random(12) < p
        positives.append(items[bought])
        for i, (item, d) in enumerate(zip(items, days, strict=True)):
            row = {name: 0.0 for name in rank.FEATURES}
            row.update(retrieval_rank=float(i + 1), retrieval_score=-float(i), buyer_item_days=d)
            rows.append({features.QUERY: q, features.ROW: int(item), **row})
    frame = pd.DataFrame(rows)
    es = retrieval.EvalSet(
        np.array([f"b{seed}-{q}" for q in range(buyers)], dtype=object),
        positives,
        int(sum(len(p) for p in positives)),
    )
    return frame, es


def _retrieval_lists(frame, queries):
    return rank.top_lists(frame, -frame["retrieval_rank"].to_numpy(), queries, 100)[0]


def test_the_stage_is_kept_when_it_beats_retrieval_on_held_out_buyers():
    val_frame, val_set = _synthetic(300, seed=1)
    test_frame, test_set = _synthetic(300, seed=2)
    val_frame = rank.with_labels(val_frame, val_set.positives)
    got = rank.run_stage(
        rank.frame_source(val_frame),
        val_set,
        _retrieval_lists(val_frame, 300),
        rank.frame_source(test_frame),
        len(test_set.buyers),
    )
    assert got.kept, got.reason
    assert got.record["val_recall"]["ranking"][10] > got.record["val_recall"]["retrieval"][10]
    # The test lists follow what the stage learned: more earlier days first.
    ranked = retrieval.recall_at_k(got.test_top, test_set)[10]
    alone = retrieval.recall_at_k(_retrieval_lists(test_frame, 300), test_set)[10]
    assert ranked > alone + 0.05
    assert got.test_top.shape == (300, 100) and (got.test_top[:, 12:] == -1).all()


def test_a_split_without_strong_lists_still_fits():
    # No strong baseline (skipped above its buyer limit): its two features have no value.
    val_frame, val_set = _synthetic(300, seed=7)
    val_frame = val_frame.assign(strong_rank=np.nan, strong_score=np.nan)
    val_frame = rank.with_labels(val_frame, val_set.positives)
    test_frame = val_frame.drop(columns=features.LABEL)
    got = rank.run_stage(
        rank.frame_source(val_frame),
        val_set,
        _retrieval_lists(val_frame, 300),
        rank.frame_source(test_frame),
        300,
    )
    assert got.kept, got.reason
    assert (got.test_top[:, :12] >= 0).all()


@pytest.mark.parametrize(
    "ranked, alone, kept, at",
    [
        ({10: 0.1, 50: 0.2, 100: 0.31}, {10: 0.2, 50: 0.3, 100: 0.30}, True, 100),
        ({10: 0.3, 50: 0.4, 100: 0.29}, {10: 0.2, 50: 0.3, 100: 0.30}, False, 100),
        ({10: 0.1, 50: 0.35, 100: 0.3}, {10: 0.2, 50: 0.3, 100: 0.3}, True, 50),  # tie at 100
        ({10: 0.2, 50: 0.3, 100: 0.3}, {10: 0.2, 50: 0.3, 100: 0.3}, False, None),
    ],
)
def test_the_decision_is_the_largest_k_where_the_two_differ(ranked, alone, kept, at):
    got, reason = stage._decide(ranked, alone)
    assert got is kept
    assert (f"recall@{at} " in reason) if at else reason.startswith("cross-fitted validation")


def test_a_window_without_a_purchase_drops_the_stage_with_the_reason(tmp_path):
    val_frame, val_set = _synthetic(20, seed=5)
    val_frame = rank.with_labels(val_frame, [np.array([], np.int64)] * 20)
    val_set = retrieval.EvalSet(val_set.buyers, [np.array([], np.int64)] * 20, 0)
    source = rank.frame_source(val_frame)
    got = rank.run_stage(source, val_set, _retrieval_lists(val_frame, 20), source, 20)
    assert not got.kept and got.test_top is None
    assert got.reason.startswith("not fit: no candidate of ")
    assert got.reason.endswith("was bought in the validation window")
    paths = rank.save(got, str(tmp_path / "ranking"))
    assert [p.rsplit("/", 1)[1] for p in paths] == [contract.RANKING_FILE]


def test_a_saved_ranker_scores_as_the_fitted_one(tmp_path):
    import joblib

    val_frame, val_set = _synthetic(200, seed=6)
    val_frame = rank.with_labels(val_frame, val_set.positives)
    source = rank.frame_source(val_frame)
    got = rank.run_stage(source, val_set, _retrieval_lists(val_frame, 200), source, 200)
    paths = rank.save(got, str(tmp_path / "ranking"))
    saved = joblib.load(paths[1])
    assert saved["features"] == list(rank.FEATURES)
    x = val_frame[list(rank.FEATURES)].to_numpy(np.float64)
    np.testing.assert_array_equal(saved["model"].predict_proba(x), got.model.predict_proba(x))


def test_a_large_validation_window_is_fit_on_a_sample_and_scored_in_chunks(monkeypatch):
    # 300 buyers, a fit sample of 120 and chunks of 70: the same decision rule, every buyer
    # ranked, the test lists built chunk by chunk equal to one pass.
    val_frame, val_set = _synthetic(300, seed=8)
    test_frame, test_set = _synthetic(200, seed=9)
    val_frame = rank.with_labels(val_frame, val_set.positives)
    asked = []
    source = rank.frame_source(test_frame)

    def test_of(queries):
        asked.append(len(queries))
        return source(queries)

    monkeypatch.setattr(stage, "MAX_FIT_BUYERS", 120)
    monkeypatch.setattr(stage, "CHUNK_BUYERS", 70)
    got = rank.run_stage(
        rank.frame_source(val_frame), val_set, _retrieval_lists(val_frame, 300), test_of, 200
    )
    assert got.record["fit_buyers"] == 120 and asked == [70, 70, 60]
    assert got.kept and (got.val_top[:, :12] >= 0).all()  # buyers outside the sample ranked too
    whole = got.model.predict_proba(stage._matrix(test_frame))[:, 1]
    rows, _ = rank.top_lists(test_frame, whole, 200, 100)
    np.testing.assert_array_equal(got.test_top, rows)
    sample = stage.fit_sample(val_set.buyers, 120)
    np.testing.assert_array_equal(sample, stage.fit_sample(val_set.buyers, 120))
    assert len(set(sample)) == 120 and (np.diff(sample) > 0).all()
