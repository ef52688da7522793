"""The sweep_pipeline under kfp.local on tiny data: 2 feature configs x 2 model configs."""

import glob
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_CONFIG, write_tiny_retail_csv
from trainer import contract

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A second feature config (with purchase history) and a second model config that diverges:
# its loss turns NaN, so its runs must end FAILED with the reason while the others finish.
SWEEP_CONFIG = TINY_CONFIG.replace(
    "model_configs:\n",
    "  - id: hist\n"
    "    name: IDs + history\n"
    "    buyer:\n"
    "      - {{name: buyer_id, transform: vocabulary, embedding_dim: 16}}\n"
    "      - {{name: history, transform: history, max_length: 10}}\n"
    "    product:\n"
    "      - {{name: product_id, transform: vocabulary, embedding_dim: 16}}\n"
    "model_configs:\n",
).replace(
    "training:\n",
    "  - id: diverge\n"
    "    name: SGD at 1e30\n"
    "    embedding_dim: 16\n"
    "    optimizer: sgd\n"
    "    learning_rate: 1.0e+30\n"
    "training:\n",
)


def test_sweep_trains_the_grid_and_reports_every_run_failed_ones_included(tmp_path):
    source = tmp_path / "tiny.csv.gz"
    write_tiny_retail_csv(source)
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(SWEEP_CONFIG.format(source=source), encoding="utf-8")
    tracking_uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    local_root = tmp_path / "local"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "run",
            "--pipeline",
            "sweep",
            "--config",
            str(config_path),
            "--tracking-uri",
            tracking_uri,
            "--local-root",
            str(local_root),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = out.stdout[-3000:] + out.stderr[-6000:]
    # Two trainings failed, so the pipeline says so (exit 1), but the report was written.
    assert out.returncode == 1, log
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == f"tracking_uri={tracking_uri}", log
    report_path = lines[-1][len("report=") :]

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny-experiment")
    runs = client.search_runs([experiment.experiment_id])
    pairs = {
        (
            r.data.params[contract.PARAM_FEATURE_CONFIG_ID],
            r.data.params[contract.PARAM_MODEL_CONFIG_ID],
        ): r
        for r in runs
    }
    assert sorted(pairs) == [
        ("hist", "diverge"),
        ("hist", "small"),
        ("ids", "diverge"),
        ("ids", "small"),
    ]
    jobs = {r.data.tags[contract.TAG_PIPELINE_JOB] for r in runs}
    assert len(jobs) == 1 and jobs.pop().startswith("sweep-pipeline")
    for fc in ("hist", "ids"):
        assert pairs[(fc, "small")].info.status == contract.STATUS_FINISHED
        assert contract.test_recall_key(100) in pairs[(fc, "small")].data.metrics
        failed = pairs[(fc, "diverge")]
        assert failed.info.status == contract.STATUS_FAILED
        assert "loss" in failed.data.tags[contract.TAG_FAILURE_REASON].lower()

    # One transform per feature config, shared by both of its trainings.
    transforms = glob.glob(str(local_root / "pipeline_root" / "*" / "*" / "transform-data"))
    assert len(transforms) == 2, transforms

    html = open(report_path, encoding="utf-8").read()
    for run in runs:
        assert run.info.run_name in html
    assert html.count("loss") > 0 and "FAILED" in html

    # The best run's model is the sweep's output, with its MLflow run id.
    best = glob.glob(str(local_root / "pipeline_root" / "*" / "select-best-model" / "best_model"))
    assert len(best) == 1
    assert os.path.isdir(os.path.join(best[0], contract.SERVING_DIR))
    # Only the winner is registered; the first sweep has no champion, so the gate says PROMOTE
    # and the If branch runs on kfp.local as on Vertex: champion moves to it.
    from trainer import config as cfg
    from trainer import registry

    name = cfg.load_config(str(config_path)).registered_model_name
    versions = client.search_model_versions(f"name='{name}'")
    assert len(versions) == 1, versions
    champion = registry.version_by_alias(client, name, contract.ALIAS_CHAMPION)
    assert champion is not None and champion.version == str(versions[0].version), log
    assert champion.tags[contract.TAG_GATE_DECISION] == contract.GATE_PROMOTE
    uploads = glob.glob(
        str(local_root / "pipeline_root" / "*" / "promote-model" / "upload_request")
    )
    assert len(uploads) == 1, "the promote step did not run"
