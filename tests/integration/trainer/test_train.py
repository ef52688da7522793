"""Training on tiny data: the MLflow contract, the serving model, and a tracking outage."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainer import config as cfg
from trainer import contract, evaluate, ingest, train
from trainer.tracking import read_run_info

pytestmark = pytest.mark.integration  # Beam + TensorFlow


@pytest.fixture
def prepared(tiny_prepared):
    return tiny_prepared


@pytest.fixture(scope="module")
def tracked(tiny_prepared, tmp_path_factory):
    """One tracked training run on the tiny data, shared by the tests that only read it."""
    config, root = tiny_prepared
    folder = tmp_path_factory.mktemp("tracked")
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    result = train.run_training(
        config,
        str(root / "examples"),
        str(root / "xf"),
        str(folder / "model"),
        tracking_uri=tracking_uri,
        pipeline_job="job-1",
        pipeline_task="train-model",
    )
    return result, folder, tracking_uri


def test_training_run_carries_the_mlflow_contract(tracked):
    result, folder, tracking_uri = tracked
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params[contract.PARAM_EPOCHS] == "2"
    assert run.data.params[contract.PARAM_FEATURE_CONFIG_ID] == "ids"
    assert run.data.params[contract.PARAM_OPTIMIZER] == "adagrad"
    assert run.data.params["model.learning_rate"] == "0.2"
    assert run.data.tags[contract.TAG_MODEL_CONFIG_NAME] == 'Small <b>"model"</b> é'
    assert run.data.tags[contract.TAG_PIPELINE_JOB] == "job-1"
    for name in contract.history_metrics():
        history = client.get_metric_history(result.run_id, name)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2], name
    metrics = run.data.metrics
    assert metrics[contract.BEST_EPOCH] == result.best_epoch
    assert metrics[contract.final_key("loss")] == pytest.approx(result.history["loss"][-1])
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"experiment.yaml", "serving_model"} <= artifacts
    assert read_run_info(str(folder / "model"))["run_id"] == result.run_id


def test_serving_model_returns_the_same_top_k_as_the_towers(prepared, tracked):
    config, root = prepared
    result = tracked[0]
    serve = evaluate.load_serving_model(result.serving_dir)
    test = pd.read_parquet(ingest.split_path(str(root / "examples"), "test"))
    queries = test.drop_duplicates(cfg.BUYER_ID).head(5)
    ids, scores = evaluate.serve_top_k(serve, queries)
    assert ids.shape == (5, min(train.SERVING_K, 30)) and (np.diff(scores, axis=1) <= 1e-6).all()
    catalog = pd.read_parquet(os.path.join(root / "examples", ingest.CATALOG_FILE))
    assert set(ids.ravel()) <= set(catalog[cfg.PRODUCT_ID])


def test_tracking_outage_does_not_stop_training(prepared, tmp_path):
    config, root = prepared
    started = time.monotonic()
    result = train.run_training(
        config,
        str(root / "examples"),
        str(root / "xf"),
        str(tmp_path / "model"),
        tracking_uri="http://127.0.0.1:9",
    )
    assert result.run_id is None and "get_or_create_experiment" in result.tracking_degraded
    assert os.path.isdir(result.serving_dir)
    backlog = (tmp_path / "model" / "mlflow_backlog.jsonl").read_text().splitlines()
    assert {json.loads(line)["key"] for line in backlog} >= {"loss", "val_loss"}
    assert time.monotonic() - started < 120


def test_evaluation_logs_test_and_baseline_recall_to_the_training_run(prepared, tracked, tmp_path):
    config, root = prepared
    result, folder, tracking_uri = tracked
    metrics = evaluate.run_evaluation(
        str(folder / "model"), str(root / "examples"), str(tmp_path / "eval")
    )
    logged = MlflowClient(tracking_uri).get_run(result.run_id).data.metrics
    for k in contract.RECALL_KS:
        for key in (
            contract.test_recall_key(k),
            contract.baseline_recall_key(contract.BASELINE_POPULAR, k),
            contract.baseline_recall_key(contract.BASELINE_OWN_HISTORY, k),
        ):
            assert 0.0 <= metrics[key] <= 1.0
            assert logged[key] == pytest.approx(metrics[key])
    # The tiny catalog has 30 products, so recall@50 and @100 cover everything.
    assert metrics[contract.test_recall_key(100)] == pytest.approx(1.0)
    assert metrics[contract.test_recall_key(10)] <= metrics[contract.test_recall_key(50)]


def test_every_transform_and_loss_option_trains_exports_and_evaluates(rich_prepared, tmp_path):
    config, root = rich_prepared
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(tmp_path / "model")
    )
    serve = evaluate.load_serving_model(result.serving_dir)
    # The serving signature takes exactly the raw columns the buyer tower reads.
    assert sorted(serve.structured_input_signature[1]) == [
        "buyer_id",
        "country",
        "history",
        "monetary",
        "recency_days",
        "timestamp",
    ]
    metrics = evaluate.run_evaluation(
        str(tmp_path / "model"), str(root / "examples"), str(tmp_path / "eval")
    )
    # Buyers in the tiny data rebuy their favourites: with repurchase scores the model
    # must do at least as well as the own-history heuristic at k=10.
    own = metrics[contract.baseline_recall_key(contract.BASELINE_OWN_HISTORY, 10)]
    assert metrics[contract.test_recall_key(10)] >= own - 0.02
    assert (
        metrics[contract.test_recall_key(10)]
        > metrics[contract.baseline_recall_key(contract.BASELINE_POPULAR, 10)]
    )
