"""Training on tiny data: the MLflow contract, the serving model, and a tracking outage."""

import dataclasses
import json
import os
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainer import config as cfg
from trainer import contract, evaluate, layout, serving, train
from trainer.tracking.tracker import read_run_info
from trainer.train.callbacks import NonFiniteLossError

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
        seed=3,  # overrides the config's training.seed (1)
        run_key="tracked-run",
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
    assert run.data.params[contract.PARAM_LEARNING_RATE] == "0.2"
    assert run.data.params[contract.PARAM_SEED] == "3"  # the seed used, not the config's
    assert cfg.load_config(str(folder / "model" / contract.CONFIG_FILE)).training.seed == 3
    assert run.data.tags[contract.TAG_MODEL_CONFIG_NAME] == 'Small <b>"model"</b> é'
    assert run.data.tags[contract.TAG_PIPELINE_JOB] == "job-1"
    for name in [*contract.history_metrics(), contract.METRIC_EPOCH_SECONDS]:
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
    serve = serving.load_serving_model(result.serving_dir)
    test = pd.read_parquet(layout.split_path(str(root / "examples"), "test"))
    queries = test.drop_duplicates(contract.BUYER_ID).head(5)
    ids, scores = serving.serve_top_k(serve, queries)
    assert ids.shape == (5, min(contract.SERVING_K, 30)) and (np.diff(scores, axis=1) <= 1e-6).all()
    catalog = pd.read_parquet(layout.catalog_path(str(root / "examples")))
    assert set(ids.ravel()) <= set(catalog[contract.PRODUCT_ID])


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
    ops = [json.loads(line) for line in backlog]
    assert ops[1]["op"] == "create_run" and ops[-1]["op"] == "terminate"
    keys = {point[0] for op in ops if op["op"] == "metrics" for point in op["metrics"]}
    assert keys >= {"loss", "val_loss"}
    assert time.monotonic() - started < 120


def test_a_non_finite_loss_fails_the_run_with_the_reason_and_the_epoch(
    prepared, tmp_path, tracking_uri
):
    config, root = prepared
    # A learning rate this large overflows the embeddings within the first epoch.
    exploding = dataclasses.replace(config.model_configs[0], optimizer="sgd", learning_rate=1e30)
    config = dataclasses.replace(config, model_configs=(exploding,))
    model_dir = tmp_path / "model"
    with pytest.raises(NonFiniteLossError, match="at epoch 1"):
        train.run_training(
            config, str(root / "examples"), str(root / "xf"), str(model_dir), tracking_uri
        )
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == contract.STATUS_FAILED
    reason = run.data.tags[contract.TAG_FAILURE_REASON]
    assert "NonFiniteLossError" in reason and "at epoch 1" in reason
    # What could be written was: the run info for later steps and the resolved config.
    assert read_run_info(str(model_dir))["run_id"] == run.info.run_id
    assert (model_dir / contract.CONFIG_FILE).exists()
    assert not (model_dir / contract.SERVING_DIR).exists()


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
            # The strong baseline of a repeat domain, computed once by ingest.
            contract.baseline_recall_key(contract.BASELINE_TIFU_KNN, k),
        ):
            assert 0.0 <= metrics[key] <= 1.0
            assert logged[key] == pytest.approx(metrics[key])
    # The tiny catalog has 30 products, so recall@50 and @100 cover everything.
    assert metrics[contract.test_recall_key(100)] == pytest.approx(1.0)
    assert metrics[contract.test_recall_key(10)] <= metrics[contract.test_recall_key(50)]

    # Per-buyer rows: the test metrics are their sums; the validation rows of the exported
    # model (no refit: the one chosen on validation) give the best epoch's validation recall.
    client = MlflowClient(tracking_uri)
    listed = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert listed == {"evaluation/per_buyer_test.parquet", "evaluation/per_buyer_val.parquet"}
    test_rows = pd.read_parquet(layout.per_buyer_path(str(tmp_path / "eval"), "test"))
    val_rows = pd.read_parquet(layout.per_buyer_path(str(tmp_path / "eval"), "eval"))
    scorers = {
        contract.SCORER_MODEL,
        contract.BASELINE_POPULAR,
        contract.BASELINE_OWN_HISTORY,
        contract.BASELINE_TIFU_KNN,
    }
    assert set(test_rows[contract.SCORER]) == set(val_rows[contract.SCORER]) == scorers
    model_rows = test_rows[test_rows[contract.SCORER] == contract.SCORER_MODEL]
    assert model_rows[contract.PAIRS].sum() == metrics[contract.TEST_PAIRS]
    assert (
        len(model_rows) == metrics[contract.TEST_BUYERS] == model_rows[contract.BUYER_ID].nunique()
    )
    for k in contract.RECALL_KS:
        hits = model_rows[contract.hits_column(k)].sum() / model_rows[contract.PAIRS].sum()
        assert hits == pytest.approx(metrics[contract.test_recall_key(k)])
    val_model = val_rows[val_rows[contract.SCORER] == contract.SCORER_MODEL]
    best_val = logged[contract.best_key(contract.val_recall_key(10))]
    assert val_model[contract.hits_column(10)].sum() / val_model[contract.PAIRS].sum() == (
        pytest.approx(best_val)
    )
    # Intervals, lifts and verdicts from the rows, on the run.
    assert logged[contract.chosen_val_recall_key(10)] == pytest.approx(best_val)
    key = contract.test_recall_key(10)
    assert logged[contract.ci_low_key(key)] <= logged[key] <= logged[contract.ci_high_key(key)]
    lift = contract.lift_key(contract.BASELINE_POPULAR, 10)
    assert logged[lift] == pytest.approx(
        metrics[key] - metrics[contract.baseline_recall_key(contract.BASELINE_POPULAR, 10)]
    )
    assert contract.ci_low_key(contract.relative_lift_key(contract.BASELINE_POPULAR, 10)) in logged
    tags = client.get_run(result.run_id).data.tags
    for baseline in (
        contract.BASELINE_POPULAR,
        contract.BASELINE_OWN_HISTORY,
        contract.BASELINE_TIFU_KNN,
    ):
        assert tags[contract.verdict_tag(baseline)] in ("beats", "tied", "worse")
    assert "resamples" in tags[contract.TAG_BOOTSTRAP]
    # Slices at SLICE_K from the rows' band columns, and beyond accuracy per scorer.
    assert set(contract.band_columns()) <= set(test_rows.columns)
    k = contract.SLICE_K
    for part in (contract.REPEAT, contract.NEW, *contract.POPULARITY_PARTS):
        pairs = model_rows[contract.pairs_column(part)].sum()
        assert logged[contract.slice_pairs_key(part)] == pairs
        if pairs:
            hits = model_rows[contract.hits_column(k, part)].sum()
            assert logged[contract.slice_recall_key(part, k)] == pytest.approx(hits / pairs)
    banded = sum(
        logged.get(contract.slice_pairs_key(name), 0) for name, *_ in contract.ACTIVITY_DAY_BANDS
    )
    assert banded == metrics[contract.TEST_PAIRS]
    for scorer in (contract.SCORER_MODEL, contract.BASELINE_POPULAR):
        coverage = logged[contract.beyond_key(contract.BEYOND_COVERAGE, 10, scorer)]
        assert 0 < coverage <= 1
        assert logged[contract.beyond_key(contract.BEYOND_POPULARITY_RANK, 10, scorer)] >= 1
    # The most popular baseline recommends the same list to all: its 10 products.
    popular = contract.beyond_key(contract.BEYOND_COVERAGE, 10, contract.BASELINE_POPULAR)
    assert logged[popular] == pytest.approx(10 / 30)
    # The protocol key and its parts (30 products in the tiny catalog).
    assert tags[contract.TAG_PROTOCOL_CATALOG] == "30"
    assert tags[contract.TAG_PROTOCOL_SPLIT].startswith("strict_time train<")
    assert len(tags[contract.TAG_PROTOCOL_KEY]) == 12


def test_every_transform_and_loss_option_trains_exports_and_evaluates(rich_prepared, tmp_path):
    config, root = rich_prepared
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(tmp_path / "model")
    )
    serve = serving.load_serving_model(result.serving_dir)
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
