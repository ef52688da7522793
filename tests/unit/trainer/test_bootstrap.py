"""The paired bootstrap over buyers: micro-averaged resamples, intervals, Holm, verdicts."""

import numpy as np
import pytest

from trainer import contract
from trainer.retrieval import bootstrap as bs

KS = (10, 100)


def _buyers(n, rates, seed=1):
    rng = np.random.default_rng(seed)
    pairs = rng.integers(1, 20, n)
    hits = {
        name: np.column_stack([rng.binomial(pairs, p) for p in by_k])
        for name, by_k in rates.items()
    }
    return pairs, hits


def test_each_resample_draws_as_many_buyers_as_there_are():
    ones = np.ones((37, 1), np.int64)
    sums = bs.resample_sums(ones, 500, seed=3, chunk_entries=37 * 64)  # 8 chunks
    assert sums.shape == (500, 1) and (sums == 37).all()


def test_recall_inside_a_resample_is_micro_averaged_over_the_drawn_buyers_pairs():
    pairs, hits = _buyers(50, {"model": (0.2, 0.5), "popular": (0.1, 0.4)})
    result = bs.paired_bootstrap(pairs, hits, "model", KS, resamples=300, seed=7)
    # The same draws by hand: one chunk, buyer indices from the same generator.
    drawn = np.random.default_rng(7).integers(0, 50, size=(300, 50), dtype=np.int32)
    for j, k in enumerate(KS):
        model = hits["model"][drawn, j].sum(1) / pairs[drawn].sum(1)
        popular = hits["popular"][drawn, j].sum(1) / pairs[drawn].sum(1)
        low, high = np.quantile(model, [0.025, 0.975])
        got = result.recall["model"][k]
        assert got.value == pytest.approx(hits["model"][:, j].sum() / pairs.sum())
        assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
        lift = result.comparisons["popular"][k].lift
        assert (lift.low, lift.high) == tuple(
            pytest.approx(q) for q in np.quantile(model - popular, [0.025, 0.975])
        )
        relative = result.comparisons["popular"][k].relative
        assert relative.low == pytest.approx(np.quantile(model / popular - 1, 0.025))


def test_the_same_seed_gives_the_same_intervals_and_more_buyers_narrower_ones():
    pairs, hits = _buyers(400, {"model": (0.2, 0.5), "popular": (0.1, 0.4)})
    a = bs.paired_bootstrap(pairs, hits, "model", KS, resamples=1000, seed=0)
    b = bs.paired_bootstrap(pairs, hits, "model", KS, resamples=1000, seed=0)
    assert a.recall == b.recall
    est = a.recall["model"][100]
    assert est.low < est.value < est.high
    big_pairs, big_hits = _buyers(6400, {"model": (0.2, 0.5), "popular": (0.1, 0.4)})
    big = bs.paired_bootstrap(big_pairs, big_hits, "model", KS, resamples=1000, seed=0)
    wide = est.high - est.low
    narrow = big.recall["model"][100].high - big.recall["model"][100].low
    assert narrow < wide / 2  # 16x the buyers: about a quarter of the width


def test_verdicts_beats_worse_and_tied_with_identical_scorers():
    pairs, hits = _buyers(3000, {"model": (0.3, 0.6), "popular": (0.1, 0.3)})
    hits["same"] = hits["model"].copy()
    hits["better"] = np.minimum(hits["model"] + 2, pairs[:, None])
    result = bs.paired_bootstrap(pairs, hits, "model", KS, resamples=1000, seed=0)
    assert {c.verdict for c in result.comparisons["popular"].values()} == {contract.VERDICT_BEATS}
    assert {c.verdict for c in result.comparisons["better"].values()} == {contract.VERDICT_WORSE}
    same = result.comparisons["same"][100]
    assert same.verdict == contract.VERDICT_TIED and same.p_value == 1.0
    assert (same.lift.value, same.lift.low, same.lift.high) == (0.0, 0.0, 0.0)
    assert result.comparisons["popular"][100].lift.low > 0


def test_holm_adjusts_step_down_and_can_turn_a_win_into_a_tie():
    assert bs.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert bs.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    # A small lift that one test alone would call a win is a tie among six: 110 buyers with
    # one more hit, 80 with one fewer, out of 4,000 (z about 2.2).
    pairs = np.full(4000, 4)
    base = np.full(4000, 2)
    model = base.copy()
    model[:110] += 1
    model[110:190] -= 1
    hits = {"model": np.column_stack([model, model, model])}
    for name in ("a", "b"):
        hits[name] = np.column_stack([base, base, base])
    result = bs.paired_bootstrap(pairs, hits, "model", (1, 2, 3), resamples=2000, seed=0)
    c = result.comparisons["a"][1]
    assert c.p_value < 0.05 < c.p_holm and c.verdict == contract.VERDICT_TIED
    assert c.lift.low > 0  # the uncorrected 95% interval alone would claim it


def test_no_buyers_gives_nan_intervals_and_no_claim():
    empty = np.empty((0, 2), np.int64)
    result = bs.paired_bootstrap(
        np.empty(0, np.int64), {"model": empty, "popular": empty}, "model", KS, resamples=1000
    )
    assert np.isnan(result.recall["model"][10].value)
    assert result.comparisons["popular"][10].verdict == contract.VERDICT_TIED
