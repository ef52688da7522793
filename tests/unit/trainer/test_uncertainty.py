"""Intervals, lifts and verdicts of an evaluation under the contract's names."""

import math

import numpy as np
import pandas as pd
import pytest

from trainer import contract
from trainer.evaluate import uncertainty

BUYERS = 2000


def _rows(scorer, rate, seed):
    rng = np.random.default_rng(seed)
    pairs = np.random.default_rng(0).integers(1, 12, BUYERS)  # the same buyers for all
    data = {contract.SCORER: scorer, contract.BUYER_ID: [f"b{i}" for i in range(BUYERS)]}
    data[contract.PAIRS] = pairs.astype(np.int32)
    for k, scale in zip(contract.RECALL_KS, (1, 2, 3), strict=True):
        data[contract.hits_column(k)] = rng.binomial(pairs, min(1.0, rate * scale)).astype(np.int32)
    return pd.DataFrame(data)


def test_test_rows_give_intervals_lifts_p_values_and_verdict_tags():
    rows = {
        contract.SCORER_MODEL: _rows(contract.SCORER_MODEL, 0.12, 1),
        contract.SCORER_SELECTED: _rows(contract.SCORER_SELECTED, 0.11, 2),
        contract.BASELINE_POPULAR: _rows(contract.BASELINE_POPULAR, 0.04, 3),
        contract.BASELINE_OWN_HISTORY: _rows(contract.BASELINE_OWN_HISTORY, 0.12, 1),
    }
    metrics, tags = uncertainty.intervals_on_test(rows)
    for k in contract.RECALL_KS:
        for key in (
            contract.test_recall_key(k),
            contract.selected_test_recall_key(k),
            contract.baseline_recall_key(contract.BASELINE_POPULAR, k),
            contract.lift_key(contract.BASELINE_POPULAR, k),
            contract.relative_lift_key(contract.BASELINE_OWN_HISTORY, k),
        ):
            low, high = metrics[contract.ci_low_key(key)], metrics[contract.ci_high_key(key)]
            assert low <= metrics[key] <= high, key
        model = rows[contract.SCORER_MODEL]
        assert metrics[contract.test_recall_key(k)] == pytest.approx(
            model[contract.hits_column(k)].sum() / model[contract.PAIRS].sum()
        )
        assert 0 <= metrics[contract.lift_p_holm_key(contract.BASELINE_POPULAR, k)] <= 1
        assert tags[contract.verdict_tag(contract.BASELINE_POPULAR, k)] == contract.VERDICT_BEATS
        # The same hits as the model: no difference at all.
        assert tags[contract.verdict_tag(contract.BASELINE_OWN_HISTORY, k)] == contract.VERDICT_TIED
    assert tags["verdict_vs_popular"] == "beats" and tags["verdict_vs_own_history"] == "tied"
    assert "2000 buyers" in tags[contract.TAG_BOOTSTRAP]
    assert not any(contract.verdict_tag(contract.SCORER_SELECTED) in t for t in tags)


def test_validation_rows_give_the_chosen_models_validation_recall_with_its_interval():
    rows = {
        contract.SCORER_MODEL: _rows(contract.SCORER_MODEL, 0.1, 1),
        contract.BASELINE_POPULAR: _rows(contract.BASELINE_POPULAR, 0.05, 3),
    }
    metrics = uncertainty.intervals_on_validation(rows)
    key = contract.chosen_val_recall_key(100)
    assert set(metrics) == {
        m(contract.chosen_val_recall_key(k))
        for k in contract.RECALL_KS
        for m in (str, contract.ci_low_key, contract.ci_high_key)
    }
    assert metrics[contract.ci_low_key(key)] < metrics[key] < metrics[contract.ci_high_key(key)]


def test_rows_on_different_buyers_are_refused():
    other = _rows(contract.BASELINE_POPULAR, 0.05, 3)
    other[contract.BUYER_ID] = other[contract.BUYER_ID][::-1].to_numpy()
    with pytest.raises(ValueError, match="popular"):
        uncertainty.intervals_on_test(
            {contract.SCORER_MODEL: _rows(contract.SCORER_MODEL, 0.1, 1), "popular": other}
        )


def test_an_empty_split_logs_nan_and_claims_nothing():
    empty = _rows(contract.SCORER_MODEL, 0.1, 1).iloc[:0]
    metrics, tags = uncertainty.intervals_on_test({"model": empty, "popular": empty})
    assert math.isnan(metrics[contract.ci_low_key(contract.test_recall_key(10))])
    assert tags[contract.verdict_tag("popular")] == contract.VERDICT_TIED
