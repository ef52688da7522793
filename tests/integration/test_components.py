"""Every pipeline component's body (via .python_func) on real files and a real SQLite store.

The sweep's steps in order on the tiny dataset: ingest, plan, transform, bind, train (twice
with the same key: a retried task resumes its MLflow run), evaluate, select the best model.
"""

import json
import os

import pytest
from kfp import dsl
from mlflow.tracking import MlflowClient

from components.evaluate import evaluate_model
from components.ingest import ingest_data
from components.plan import bind_transforms, plan_sweep
from components.select import select_best_model
from components.train import train_model
from components.transform import transform_data
from tests.conftest import TINY_CONFIG, write_tiny_retail_csv
from trainer import config as cfg
from trainer import contract

pytestmark = pytest.mark.integration

JOB = "sweep-pipeline-20261127-test"


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """Runs the steps once for the module; returns what each produced."""
    root = tmp_path_factory.mktemp("components")
    write_tiny_retail_csv(root / "tiny.csv.gz")
    text = TINY_CONFIG.format(source=root / "tiny.csv.gz").replace("seed: 1", "seeds: [1, 2]")
    config_yaml = cfg.dump_config(cfg.parse_config_text(text))
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    out = {"root": root, "config_yaml": config_yaml, "tracking_uri": tracking_uri}

    examples = dsl.Dataset(name="examples", uri=str(root / "examples"))
    ingest_data.python_func(config_yaml=config_yaml, examples=examples)
    out["examples"] = examples

    out["plan"] = plan_sweep.python_func(config_yaml=config_yaml)
    graph = dsl.Artifact(name="transform_graph", uri=str(root / "transform"))
    out["transform"] = transform_data.python_func(
        config_yaml=config_yaml,
        examples=examples,
        transform_graph=graph,
        feature_config_id=out["plan"][0],
    )
    out["bound"] = bind_transforms.python_func(
        config_yaml=config_yaml, transforms=[out["transform"]]
    )
    item = out["bound"][0]
    imported = dsl.Artifact(name="transform_graph", uri=item["transform_uri"])
    runs = []
    for attempt in range(2):  # the second call is a retry of the same task
        model = dsl.Model(name="model", uri=str(root / f"model-{attempt}"))
        runs.append(
            train_model.python_func(
                config_yaml=config_yaml,
                examples=examples,
                transform_graph=imported,
                model=model,
                mlflow_tracking_uri=tracking_uri,
                feature_config_id=item["feature_config_id"],
                model_config_id=item["model_config_id"],
                seed=item["seed"],
                pipeline_job=JOB,
                pipeline_task="train-model",
            )
        )
    out["runs"], out["model"] = runs, model
    evaluation = dsl.Metrics(name="evaluation", uri=str(root / "evaluation" / "evaluation"))
    out["evaluated_run"] = evaluate_model.python_func(
        examples=examples,
        model=model,
        evaluation=evaluation,
        mlflow_tracking_uri=tracking_uri,
        transform_graph=imported,
        prices={"vcpu_hour": 3600.0},  # 1 USD per vCPU-second: the figures are easy to check
    )
    out["evaluation"] = evaluation
    best = dsl.Model(name="best_model", uri=str(root / "best_model"))
    select_best_model.python_func(
        rank_metric=contract.DEFAULT_RANK_METRIC,
        config_yaml=config_yaml,
        mlflow_tracking_uri=tracking_uri,
        best_model=best,
        pipeline_job=JOB,
    )
    out["best"] = best
    return out


def test_ingest_writes_the_splits_and_counts_in_metadata(steps):
    meta = steps["examples"].metadata
    assert meta["rows_kept"] < meta["rows_read"] and meta["rows_dropped"]
    assert set(meta["rows"]) == set(contract.SPLITS) and meta["catalog_size"] == 30
    assert os.path.exists(os.path.join(steps["examples"].path, contract.CATALOG_FILE))


def test_plan_lists_each_feature_config_once_and_bind_every_seed(steps):
    assert steps["plan"] == ["ids"]
    bound = steps["bound"]
    assert [(t["model_config_id"], t["seed"]) for t in bound] == [("small", 1), ("small", 2)]
    # Each item names its transform; the train step derives the run key from job + ids + seed.
    assert {t["feature_config_id"] for t in bound} == {"ids"}
    assert all(t["transform_uri"] for t in bound) and "run_key" not in bound[0]


def test_transform_returns_its_uri_and_bind_hands_it_to_every_training(steps):
    assert steps["transform"] == {
        "feature_config_id": "ids",
        "uri": str(steps["root"] / "transform"),
    }
    assert {t["transform_uri"] for t in steps["bound"]} == {str(steps["root"] / "transform")}
    with pytest.raises(ValueError, match="no transform output for feature config"):
        bind_transforms.python_func(config_yaml=steps["config_yaml"], transforms=[])


def test_a_retried_train_task_resumes_its_run_instead_of_adding_one(steps):
    first, second = steps["runs"]
    assert first and first == second
    client = MlflowClient(steps["tracking_uri"])
    experiment = client.get_experiment_by_name("tiny-experiment")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [first]
    run = runs[0]
    assert run.info.status == contract.STATUS_FINISHED
    assert run.data.params[contract.PARAM_SEED] == "1"
    assert run.data.tags[contract.TAG_PIPELINE_JOB] == JOB
    assert run.data.tags[contract.TAG_MODEL_URI] == steps["model"].uri
    assert steps["model"].metadata["mlflow_run_id"] == first


def test_evaluate_logs_test_recall_to_the_training_run_and_kfp_metrics(steps):
    assert steps["evaluated_run"] == steps["runs"][0]
    metrics = steps["evaluation"].metadata
    for k in contract.RECALL_KS:
        assert 0.0 <= metrics[contract.test_recall_key(k)] <= 1.0
    run = MlflowClient(steps["tracking_uri"]).get_run(steps["runs"][0])
    assert run.data.metrics[contract.test_recall_key(100)] == metrics[contract.test_recall_key(100)]


def test_evaluate_logs_every_steps_time_machine_and_cost_into_the_run(steps):
    run = MlflowClient(steps["tracking_uri"]).get_run(steps["runs"][0])
    metrics, tags = run.data.metrics, run.data.tags
    for step in contract.COST_STEPS:
        seconds = metrics[contract.cost_seconds_key(step)]
        vcpus = metrics[contract.cost_vcpus_key(step)]
        assert seconds > 0 and vcpus > 0, step
        assert tags[contract.cost_machine_tag(step)] == contract.MACHINE_LOCAL
        assert tags[contract.cost_scheduling_tag(step)] == "STANDARD"
        # The override prices a local machine at 1 USD per vCPU-second.
        assert abs(metrics[contract.cost_usd_key(step)] - seconds * vcpus) < 1e-3 * seconds * vcpus
    own = [contract.cost_usd_key(s) for s in contract.OWN_STEPS]
    assert abs(metrics[contract.COST_USD] - sum(metrics[k] for k in own)) < 1e-3
    assert metrics[contract.COST_MACHINE_SECONDS] == pytest.approx(
        sum(metrics[contract.cost_seconds_key(s)] for s in contract.OWN_STEPS), abs=1e-3
    )
    # The shared steps carry their execution's id: the same for every run that shared them.
    with open(os.path.join(steps["examples"].path, contract.STEP_RECORD_FILE)) as f:
        assert tags[contract.cost_execution_tag("ingest")] == json.load(f)["execution"]
    assert "overridden: vcpu_hour" in tags[contract.TAG_COST_PRICES]


def test_select_best_model_copies_the_best_run_with_its_identity(steps):
    best = steps["best"]
    assert best.metadata["mlflow_run_id"] == steps["runs"][0]
    assert best.metadata["feature_config_id"] == "ids" and best.metadata["seed"] == "1"
    assert contract.test_recall_key(100) in best.metadata
    assert os.path.isdir(os.path.join(best.path, contract.SERVING_DIR))
    with open(os.path.join(best.path, contract.RUN_INFO_FILE)) as f:
        assert json.load(f)["run_id"] == steps["runs"][0]
