"""Intervals on the leaderboard, runs tied with the leader, and the decision in one sentence."""

import re
from pathlib import Path

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
        "statistically tied with 1 of the 1 other runs judged (close); on test Test recall@100 "
        "= 0.3700, beats popular, tied own history (Holm-corrected)."
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
