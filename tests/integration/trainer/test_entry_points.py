"""The trainer runs three ways with the same code: TFX run_fn, python -m trainer, and the
serving model answers in a fresh process exactly as evaluation saw it."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient
from tensorflow_transform import DatasetMetadata
from tensorflow_transform.beam import tft_unit

from trainer import config as cfg
from trainer import contract, layout
from trainer.tfx_module import preprocessing_fn, run_fn

pytestmark = pytest.mark.integration  # Beam + TensorFlow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_tfx_run_fn_trains_from_fn_args(tiny_prepared, tmp_path, tracking_uri):
    config, root = tiny_prepared
    fn_args = types.SimpleNamespace(
        train_files=[layout.transformed_pattern(str(root / "xf"), "train")],
        eval_files=[layout.transformed_pattern(str(root / "xf"), "eval")],
        transform_output=str(root / "xf"),
        serving_model_dir=str(tmp_path / "serving"),
        model_run_dir=str(tmp_path / "run"),
        custom_config={
            "config_yaml": cfg.dump_config(config),
            "ingest_dir": str(root / "examples"),
            "mlflow_tracking_uri": tracking_uri,
            "model_config_id": "small",
        },
    )
    run_fn(fn_args)
    assert os.path.exists(tmp_path / "serving" / "saved_model.pb")
    runs = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_experiment_by_name(config.experiment).experiment_id]
    )
    assert len(runs) == 1 and runs[0].data.params[contract.PARAM_MODEL_CONFIG_ID] == "small"


class TfxPreprocessingFnTest(tft_unit.TransformTestCase):
    def test_transforms_the_feature_config_given_in_custom_config(self):
        fc = cfg.FeatureConfig(
            id="t",
            name="t",
            buyer=(
                cfg.Feature(contract.BUYER_ID, "vocabulary"),
                cfg.Feature(contract.COUNTRY, "hashing", hash_buckets=7),
            ),
            product=(cfg.Feature(contract.PRODUCT_ID, "vocabulary"),),
        )
        custom_config = {"feature_config": json.dumps(cfg.to_dict(fc))}
        columns = (contract.BUYER_ID, contract.PRODUCT_ID, contract.COUNTRY)
        rows = [
            dict(zip(columns, r))
            for r in (("b1", "p1", "UK"), ("b1", "p2", "FR"), ("b2", "p1", "UK"))
        ]
        buckets = tf.strings.to_hash_bucket_fast(["UK", "FR", "UK"], 7).numpy().tolist()
        # Vocabularies by frequency: b1 and p1 (twice) get id 0.
        expected = [
            {"buyer_id__vocabulary": b, "product_id__vocabulary": p, "country__hashing": h}
            for b, p, h in zip((0, 0, 1), (0, 1, 0), buckets)
        ]
        self.assertAnalyzeAndTransformResults(
            rows,
            DatasetMetadata.from_feature_spec(
                {c: tf.io.FixedLenFeature([], tf.string) for c in columns}
            ),
            lambda inputs: preprocessing_fn(inputs, custom_config),
            expected_data=expected,
        )


def test_python_m_trainer_runs_every_step_and_the_served_top_k_matches_evaluation(
    tiny_dataset, tmp_path, tracking_uri
):
    work = tmp_path / "work"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "--config",
            tiny_dataset["config_path"],
            "--work-dir",
            str(work),
            "--tracking-uri",
            tracking_uri,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    metrics = json.loads(out.stdout[out.stdout.index("{") :])
    assert 0.0 <= metrics[contract.test_recall_key(10)] <= 1.0
    run_id = out.stdout.split("run_id=")[1].split()[0]
    run = MlflowClient(tracking_uri).get_run(run_id).data
    logged = run.metrics
    assert logged[contract.test_recall_key(10)] == pytest.approx(
        metrics[contract.test_recall_key(10)]
    )
    # Every step recorded itself, so the run's cost counts them all.
    for step in contract.COST_STEPS:
        assert logged[contract.cost_seconds_key(step)] > 0, step
    assert logged[contract.COST_USD] > 0
    assert "no record" not in run.tags[contract.TAG_COST_PRICES]

    # A fresh interpreter loads the exported model and serves the same top-k for the same
    # raw buyer features that evaluation used.
    top_k = pd.read_parquet(layout.top_k_path(str(work / "evaluate")))
    probe = (
        "import json, sys, pandas as pd\n"
        "from trainer import config as cfg, inputs, serving\n"
        "work = sys.argv[1]\n"
        "config = cfg.load_config(work + '/train/experiment.yaml')\n"
        "history = pd.concat([pd.read_parquet(work + f'/ingest/{s}.parquet') for s in ('train', 'eval')])\n"
        "test = pd.read_parquet(work + '/ingest/test.parquet')\n"
        "buyers = json.loads(sys.argv[2])\n"
        "queries = inputs.query_frame(history, buyers, inputs.as_of_time(history, test), config.history_length or 50)\n"
        "ids, scores = serving.serve_top_k(serving.load_serving_model(work + '/train/serving'), queries)\n"
        "print(json.dumps({'ids': ids.tolist(), 'scores': scores.tolist()}))\n"
    )
    buyers = top_k[contract.BUYER_ID].tolist()[:7]
    fresh = subprocess.run(
        [sys.executable, "-c", probe, str(work), json.dumps(buyers)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    served = json.loads(fresh.stdout.strip().splitlines()[-1])
    for i in range(len(buyers)):
        k = len(top_k["product_ids"].iloc[i])
        assert served["ids"][i][:k] == list(top_k["product_ids"].iloc[i])
        np.testing.assert_allclose(served["scores"][i][:k], top_k["scores"].iloc[i], rtol=1e-5)


def test_python_m_trainer_rejects_a_bad_config_with_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\n")
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert f"{bad}: dataset: required field is missing" in out.stderr


def test_python_m_trainer_says_an_empty_test_split_in_one_line_and_exits_2(tiny_dataset, tmp_path):
    config = tiny_dataset["config_path"]
    with open(config, encoding="utf-8") as f:
        text = f.read().replace("eval_end: 2011-11-01", "eval_end: 2012-03-01")
    with open(config, "w", encoding="utf-8") as f:
        f.write(text)
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--config", config, "--steps", "ingest"]
        + ["--work-dir", str(tmp_path / "work")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {tiny_dataset['source']}: dataset.split: the test split (from 2012-03-01 on) "
        "has no rows; counts after cleaning: " + errors[0].split("counts after cleaning: ")[1]
    ]
    assert "Traceback" not in out.stderr
