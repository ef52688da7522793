"""The whole training_pipeline under kfp.local on a tiny generated dataset, twice."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from trainer import contract

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_pipeline(config_path, tracking_uri, local_root):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "run",
            "--pipeline",
            "training",
            "--config",
            config_path,
            "--tracking-uri",
            tracking_uri,
            "--local-root",
            str(local_root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout.strip().splitlines()


def test_pipeline_runs_end_to_end_and_reports_every_run(tiny_dataset, tmp_path):
    tracking_uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    lines = _run_pipeline(tiny_dataset["config_path"], tracking_uri, tmp_path / "local")
    assert lines[-2] == f"tracking_uri={tracking_uri}"
    assert lines[-1].startswith("report=") and lines[-1].endswith("leaderboard.html")
    report_path = lines[-1][len("report=") :]

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny-experiment")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params[contract.PARAM_MODEL_CONFIG_ID] == "small"
    assert run.data.params[contract.PARAM_BATCH_SIZE] == "256"
    assert run.data.tags[contract.TAG_DATASET_NAME] == "tiny_retail"
    assert run.data.tags[contract.TAG_PIPELINE_JOB].startswith("training-pipeline")
    for k in contract.RECALL_KS:
        assert 0.0 <= run.data.metrics[contract.test_recall_key(k)] <= 1.0
        assert contract.baseline_recall_key(contract.BASELINE_POPULAR, k) in run.data.metrics
    html = open(report_path, encoding="utf-8").read()
    assert run.info.run_name in html and run.info.run_id in html
    # The config's model name holds markup: the report shows it escaped, never raw.
    assert "Small &lt;b&gt;" in html and "Small <b>" not in html

    # A second run lands in the same experiment, and the new report shows both.
    lines = _run_pipeline(tiny_dataset["config_path"], tracking_uri, tmp_path / "local")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    html = open(lines[-1][len("report=") :], encoding="utf-8").read()
    assert all(r.info.run_name in html for r in runs)
