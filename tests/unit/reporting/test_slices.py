"""The slices view: where the best run wins against the baselines, read from logged metrics."""

import re
from pathlib import Path

from mlflow.tracking import MlflowClient

from reporting.build import write_report
from tests.unit.reporting.mlflow_runs import EVIL, log_run, standard_history
from trainer import contract

K = contract.SLICE_K


def _slice_metrics(model_new=0.30, base_new=0.10):
    """Slice and beyond-accuracy metrics as the evaluate step names them."""
    out = {}
    for name, _, _ in contract.SLICES:
        ours = model_new if name == contract.NEW else 0.5
        theirs = base_new if name == contract.NEW else 0.6
        out[contract.slice_pairs_key(name)] = 120.0
        for scorer, value in ((contract.SCORER_MODEL, ours), (contract.BASELINE_POPULAR, theirs)):
            key = contract.slice_recall_key(name, K, scorer)
            out |= {key: value, contract.ci_low_key(key): value - 0.05}
            out[contract.ci_high_key(key)] = value + 0.05
        lift = contract.slice_lift_key(name, contract.BASELINE_POPULAR, K)
        out |= {lift: ours - theirs, contract.ci_low_key(lift): ours - theirs - 0.03}
        out[contract.ci_high_key(lift)] = ours - theirs + 0.03
    for scorer in (contract.SCORER_MODEL, contract.BASELINE_POPULAR):
        for k in contract.RECALL_KS:
            out[contract.beyond_key(contract.BEYOND_COVERAGE, k, scorer)] = 0.25
            out[contract.beyond_key(contract.BEYOND_POPULARITY_RANK, k, scorer)] = 812.5
            out[contract.beyond_key(contract.BEYOND_TAIL_SHARE, k, scorer)] = 0.125
    return out


def test_the_slices_view_shows_the_best_run_against_the_baselines(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment("slices")
    log_run(
        client,
        eid,
        EVIL,
        history=standard_history(1.5),
        extra_metrics=_slice_metrics(),
        start_time=1,
    )
    old = log_run(client, eid, "old", history=standard_history(1.0), start_time=2)
    result = write_report(tracking_uri, "slices", str(tmp_path), highlight_run_id=old)
    page = Path(result.pages[contract.VIEW_SLICES]).read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "<h1>Where it wins</h1>" in page
    table = re.search(r'<table class="data slices" id="slices-1">.*?</table>', page, re.DOTALL)[0]
    new_row = re.search(r"<tr><th scope=\"row\" class=\"wrap\">new targets</th>.*?</tr>", table)[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", new_row)
    assert cells[0] == "120"
    assert cells[1] == '0.3000<div class="ci">95%: 0.2500 to 0.3500</div>'
    assert cells[3].startswith("+0.2000") and "95%: 0.1700 to 0.2300" in cells[3]
    for label in ("1 earlier purchase day", "10+ earlier purchase days", "tail products"):
        assert label in table
    assert "own history" not in table  # not logged: no columns
    beyond = re.search(r'<table class="data beyond" id="beyond-1">.*?</table>', page, re.DOTALL)[0]
    assert "Catalog coverage @10" in beyond and "812.5" in beyond and "0.125" in beyond
    # The highlighted run was evaluated before slices: listed, marked, nothing made up.
    assert page.count('class="muted no-slices"') == 1
    assert "This run: <bdi>old</bdi>" in page
    # Every page names the view; the combined page holds it.
    combined = Path(result.pages[contract.VIEW_COMBINED]).read_text(encoding="utf-8")
    assert 'id="slices"' in combined and 'href="#slices"' in combined


def test_the_slices_view_of_an_empty_experiment(tracking_uri, tmp_path):
    MlflowClient(tracking_uri).create_experiment("empty")
    result = write_report(tracking_uri, "empty", str(tmp_path))
    page = Path(result.pages[contract.VIEW_SLICES]).read_text(encoding="utf-8")
    assert "No ranked run yet." in page
