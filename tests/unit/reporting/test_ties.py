"""Intervals on the leaderboard, runs tied with the leader, and the decision in one sentence."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from reporting import ties
from reporting.aggregate import leaderboard
from reporting.build import write_report
from reporting.metric import RankMetric
from reporting.records import RunRecord
from tests.unit.reporting.mlflow_runs import log_run
from trainer import contract

RANK = RankMetric.of(contract.DEFAULT_RANK_METRIC)
CHOSEN = contract.chosen_val_recall_key(100)


def _metrics(value, half_width, shift=0.0):
    """The rank value and the chosen model's validation interval (``shift``: a calibration)."""
    centre = value + shift
    return {
        contract.DEFAULT_RANK_METRIC: value,
        CHOSEN: centre,
        contract.ci_low_key(CHOSEN): centre - half_width,
        contract.ci_high_key(CHOSEN): centre + half_width,
    }


def _run(name, metrics, start, tags=None):
    return RunRecord(name, name, contract.STATUS_FINISHED, start, None, {}, tags or {}, metrics, {})


def test_a_run_within_the_noise_of_the_leader_is_tied_a_far_one_is_not():
    runs = [
        _run("leader", _metrics(0.30, 0.01), 1),
        _run("close", _metrics(0.29, 0.01), 2),  # gap 0.01 < 1.96 * sqrt(2) * 0.0051
        _run("far", _metrics(0.25, 0.01), 3),
        _run("calibrated", _metrics(0.295, 0.01, shift=0.02), 4),
        _run("old", {contract.DEFAULT_RANK_METRIC: 0.299}, 5),  # no interval: not judged
    ]
    rows = leaderboard(runs, RANK)
    ties.mark_ties(rows, RANK)
    by_name = {r.run.name: r for r in rows}
    assert by_name["leader"].interval == pytest.approx((0.29, 0.31))
    # The chosen model's spread, moved around the rank value.
    assert by_name["calibrated"].interval == pytest.approx((0.285, 0.305))
    assert by_name["close"].tied is True and by_name["calibrated"].tied is True
    assert by_name["far"].tied is False
    assert by_name["old"].tied is None and by_name["old"].interval is None


def test_the_decision_names_the_pick_its_ties_its_test_value_and_verdicts():
    verdicts = {
        contract.verdict_tag("popular"): "beats",
        contract.verdict_tag("own_history"): "tied",
    }
    leader = _run(
        "leader", {**_metrics(0.30, 0.01), contract.test_recall_key(100): 0.37}, 1, verdicts
    )
    rows = leaderboard([leader, _run("close", _metrics(0.29, 0.01), 2)], RANK)
    ties.mark_ties(rows, RANK)
    sentence = ties.decision(rows, RANK, contract.test_recall_key(100))
    assert sentence == (
        "Pick leader ( \u00d7 ): best by Best val recall@100 = 0.3000 (95% 0.2900 to 0.3100), "
        "statistically tied with 1 of the 1 other runs judged (close; approximate: intervals "
        "taken as independent); on test Test recall@100 = 0.3700, beats popular, tied own "
        "history (Holm-corrected)."
    )
    assert ties.decision([], RANK, contract.test_recall_key(100)) is None


def test_the_pages_show_intervals_ties_and_the_decision(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment("ties")
    log_run(
        client,
        eid,
        "leader",
        test_recall={100: 0.37},
        extra_metrics=_metrics(0.30, 0.01),
        start_time=1,
    )
    log_run(
        client,
        eid,
        "close",
        test_recall={100: 0.38},
        extra_metrics=_metrics(0.29, 0.01),
        start_time=2,
    )
    log_run(
        client, eid, "far", test_recall={100: 0.30}, extra_metrics=_metrics(0.2, 0.01), start_time=3
    )
    result = write_report(tracking_uri, "ties", str(tmp_path))
    board = Path(result.pages[contract.VIEW_LEADERBOARD]).read_text(encoding="utf-8")
    rows = re.findall(r"<tr class=\"[^\"]*\" data-run-id=.*?</tr>", board, re.DOTALL)
    assert "95%: 0.2900 to 0.3100" in rows[0] and "tied with #1" not in rows[0]
    assert "tied with #1" in rows[1] and "tied with #1" not in rows[2]
    dashboard = Path(result.pages[contract.VIEW_DASHBOARD]).read_text(encoding="utf-8")
    assert 'id="decision"' in dashboard and "statistically tied with 1 of the 2" in dashboard
    assert "**Decision.**" in result.markdown


def _rows(buyers, pairs, hits):
    """Per-buyer validation rows of one model at k = 100."""
    return pd.DataFrame(
        {
            contract.SCORER: contract.SCORER_MODEL,
            contract.BUYER_ID: [f"b{i}" for i in buyers],
            contract.PAIRS: pairs,
            contract.hits_column(100): hits,
        }
    )


def test_paired_ties_resample_the_same_buyers_for_every_run():
    rng = np.random.default_rng(0)
    pairs = rng.integers(1, 20, 2000)
    lead = rng.binomial(pairs, 0.3)
    # The same buyers in another order, a run that loses a hit now and then (paired: the small
    # but steady loss is significant), one that loses a third of them, and other buyers.
    same = _rows(range(2000), pairs, lead).iloc[::-1]
    steady = np.where(rng.random(2000) < 0.03, np.maximum(lead - 1, 0), lead)
    found = ties.paired_ties(
        _rows(range(2000), pairs, lead),
        {
            "same": same,
            "steady": _rows(range(2000), pairs, steady),
            "worse": _rows(range(2000), pairs, lead * 2 // 3),
            "other": _rows(range(1, 2001), pairs, lead),
        },
        100,
    )
    assert found["same"].tied and found["same"].diff.value == 0
    assert not found["steady"].tied and found["steady"].diff.high < 0
    # Each run's own interval is ~0.013 wide here (SE ~0.0032): taken as independent, a tie
    # needs a gap over 1.96 x 0.0046 = 0.009; the steady loss of ~0.003 would be called one.
    assert -0.005 < found["steady"].diff.value < 0
    assert not found["worse"].tied and found["worse"].buyers == 2000
    assert found["other"] == "its validation buyers are not the leader's"
    tags = found["steady"].tags("L", 100, contract.BOOTSTRAP_RESAMPLES)
    assert tags[contract.TAG_TIED_WITH_BEST] == "false" and tags[contract.TAG_BEST_RUN_ID] == "L"
    assert re.fullmatch(r"\[-0\.\d{4}, -0\.\d{4}\]", tags[contract.TAG_DIFF_VS_BEST_CI])


def _paired(leader_id, tied, ci="[-0.0100, +0.0020]"):
    return {
        contract.TAG_BEST_RUN_ID: leader_id,
        contract.TAG_TIED_WITH_BEST: "true" if tied else "false",
        contract.TAG_DIFF_VS_BEST_CI: ci,
    }


def test_paired_tags_of_this_leader_win_over_the_approximate_test():
    runs = [
        _run("leader", _metrics(0.30, 0.01), 1),
        # Approximately tied, but the paired test found it behind.
        _run("close", _metrics(0.29, 0.01), 2, _paired("leader", False, "[-0.0150, -0.0050]")),
        # Tags of another leader (an older sweep's): ignored, the approximate test decides.
        _run("stale", _metrics(0.25, 0.01), 3, _paired("someone-else", True)),
        _run("paired-tie", {contract.DEFAULT_RANK_METRIC: 0.28}, 4, _paired("leader", True)),
    ]
    rows = leaderboard(runs, RANK)
    ties.mark_ties(rows, RANK)
    by_name = {r.run.name: r for r in rows}
    assert by_name["close"].tied is False and by_name["close"].tie_paired
    assert by_name["close"].diff_ci == "[-0.0150, -0.0050]"
    assert by_name["stale"].tied is False and not by_name["stale"].tie_paired
    # No interval of its own, but judged by the paired test.
    assert by_name["paired-tie"].tied is True and by_name["paired-tie"].tie_paired
    sentence = ties.decision(rows, RANK, contract.test_recall_key(100))
    assert (
        "statistically tied with 1 of the 3 other runs judged (paired-tie; paired over the same "
        "validation buyers for 2, approximate for 1)" in sentence
    )


def test_the_decision_names_the_lift_over_the_strongest_baseline_with_its_interval():
    rel = contract.relative_lift_key(contract.BASELINE_OWN_HISTORY, 100)
    metrics = {
        **_metrics(0.30, 0.01),
        contract.baseline_recall_key(contract.BASELINE_POPULAR, 100): 0.16,
        contract.baseline_recall_key(contract.BASELINE_OWN_HISTORY, 100): 0.34,
        rel: 0.087,
        contract.ci_low_key(rel): 0.031,
        contract.ci_high_key(rel): 0.140,
    }
    tags = {
        contract.verdict_tag(contract.BASELINE_OWN_HISTORY, 100): "beats",
        contract.verdict_tag(contract.BASELINE_POPULAR): "beats",
    }
    rows = leaderboard([_run("leader", metrics, 1, tags)], RANK)
    ties.mark_ties(rows, RANK)
    assert ties.decision(rows, RANK, contract.test_recall_key(100)).endswith(
        "against the strongest baseline, own history, +8.7% [95% +3.1% to +14.0%] at 100 on "
        "test: beats (Holm-corrected); beats popular."
    )
