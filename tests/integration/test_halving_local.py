"""The halving_pipeline under kfp.local on tiny data: 3 trials, 2 rungs, 1 epoch each."""

import json
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_CONFIG, write_tiny_retail_csv
from trainer import contract

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Three trials of the learning rate; eta 2 from 1 epoch up to 2: rung 1 trains all three for
# an epoch, rung 2 (the last) the best one for its second. The pipeline has 4 rung stages, so
# its first two are empty: their loops run over empty lists.
HALVING_CONFIG = TINY_CONFIG.replace(
    "    learning_rate: 0.2\n", "    learning_rate: {{loguniform: [0.01, 0.5]}}\n"
) + ("search: {{strategy: halving, trials: 3, seed: 5, eta: 2, min_epochs: 1}}\n")


def test_halving_stops_the_worst_trials_finished_and_the_best_goes_on_from_its_checkpoint(
    tmp_path,
):
    source = tmp_path / "tiny.csv.gz"
    write_tiny_retail_csv(source)
    config_path = tmp_path / "halving.yaml"
    config_path.write_text(HALVING_CONFIG.format(source=source), encoding="utf-8")
    tracking_uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "run",
            "--pipeline",
            "halving",
            "--config",
            str(config_path),
            "--tracking-uri",
            tracking_uri,
            "--local-root",
            str(tmp_path / "local"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = out.stdout[-3000:] + out.stderr[-8000:]
    assert out.returncode == 0, log
    report_path = out.stdout.strip().splitlines()[-1][len("report=") :]

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny-experiment")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3, log  # one run per trial, carried on from rung to rung
    by_status = {}
    for run in runs:
        assert run.info.status == contract.STATUS_FINISHED
        by_status.setdefault(run.data.tags[contract.TAG_HALVING_STATUS], []).append(run)
    (best,) = by_status[contract.HALVING_COMPLETED]
    stopped = by_status[contract.HALVING_STOPPED]
    assert len(stopped) == 2

    # The stopped trials: where and why on the run, one epoch trained, never evaluated.
    kept_value = float(best.data.tags[contract.halving_rung_value_tag(1)])
    for run in stopped:
        tags = run.data.tags
        assert tags[contract.TAG_HALVING_RUNG] == "1"
        assert tags[contract.TAG_HALVING_EPOCHS] == "1"
        value = float(tags[contract.halving_rung_value_tag(1)])
        # Tiny data: every trial may tie (a catalog under 100 products), the earlier kept.
        how = "tied with" if value == kept_value else "below"
        assert tags[contract.TAG_HALVING_REASON].startswith(
            f"rung 1 of 2: {contract.SELECTION_METRIC} {value:.4f} {how} the 1st best "
            f"{kept_value:.4f}"
        )
        assert tags[contract.TAG_HALVING_REASON].endswith("(the best 1 of 3 go on)")
        assert value <= kept_value
        assert contract.test_recall_key(100) not in run.data.metrics
        # Never evaluated, it still has its cost: its rung's train record, logged when stopped.
        assert run.data.metrics[contract.COST_MACHINE_SECONDS] > 0
        assert run.data.metrics[contract.cost_seconds_key("train")] > 0
        assert "train" not in run.data.tags[contract.TAG_COST_PRICES].partition("no record of")[2]
        # Its rung-1 checkpoint stays in its task's model folder.
        state = os.path.join(tags[contract.TAG_MODEL_URI], "checkpoint", "fit", "state.json")
        with open(state, encoding="utf-8") as f:
            assert json.load(f)["epochs_done"] == 1

    # The survivor went on in the same run from its checkpoint: each epoch logged once.
    tags = best.data.tags
    assert tags[contract.TAG_HALVING_RUNG] == "2" and tags[contract.TAG_HALVING_EPOCHS] == "2"
    for key in (contract.METRIC_LOSS, contract.SELECTION_METRIC, contract.METRIC_EPOCH_SECONDS):
        steps = [m.step for m in client.get_metric_history(best.info.run_id, key)]
        assert sorted(steps) == [1, 2], (key, steps)
    recall = client.get_metric_history(best.info.run_id, contract.SELECTION_METRIC)
    at = {m.step: m.value for m in recall}
    assert float(tags[contract.halving_rung_value_tag(1)]) == pytest.approx(at[1], abs=1e-6)
    assert float(tags[contract.halving_rung_value_tag(2)]) == pytest.approx(max(at.values()))
    assert contract.test_recall_key(100) in best.data.metrics
    # Its train cost covers both rungs: more than the stopped trials' one rung each (the same
    # data, one epoch each at rung 1; rung 2 adds an epoch).
    train_seconds = best.data.metrics[contract.cost_seconds_key("train")]
    assert train_seconds > max(r.data.metrics[contract.cost_seconds_key("train")] for r in stopped)
    # The final rung's own folder holds the exported model; its checkpoint was removed.
    final_dir = tags[contract.TAG_MODEL_URI]
    assert os.path.isdir(os.path.join(final_dir, contract.SERVING_DIR))
    assert not os.path.exists(os.path.join(final_dir, contract.CHECKPOINT_DIR))

    # Only the survivor competes: it is the sweep's best and the registered version.
    from trainer import config as cfg

    name = cfg.load_config(str(config_path)).registered_model_name
    (version,) = client.search_model_versions(f"name='{name}'")
    assert version.run_id == best.info.run_id

    html = open(report_path.replace("leaderboard", "training_curves"), encoding="utf-8").read()
    assert 'id="rung-table"' in html
    assert "3 reached rung 1, 1 reached rung 2" in html
