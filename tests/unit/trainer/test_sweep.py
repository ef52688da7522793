"""The sweep's plan, its binding to transforms, and the run key a retried training finds."""

import pytest

from tests.conftest import TINY_CONFIG
from trainer import config as cfg
from trainer import sweep

TWO_BY_TWO = (
    TINY_CONFIG.replace(
        "model_configs:\n",
        "  - id: ids2\n    buyer:\n      - {{name: buyer_id, transform: vocabulary}}\n"
        "    product:\n      - {{name: product_id, transform: vocabulary}}\nmodel_configs:\n",
    )
    .replace("training:\n", "  - id: big\n    embedding_dim: 32\ntraining:\n")
    .replace("seed: 1", "seeds: [1, 2]")
)


def _config(**grid):
    text = TWO_BY_TWO.format(source="/data/x.csv")
    config = cfg.parse_config_text(text)
    if grid:
        data = cfg.loads(cfg.dump_config(config))
        data["grid"] = grid
        config = cfg.parse_config(data)
    return config


def test_plan_transforms_each_used_feature_config_once_and_trains_pairs_times_seeds():
    feature_configs, trainings = sweep.plan(_config())
    assert feature_configs == ["ids", "ids2"]
    assert len(trainings) == 2 * 2 * 2
    assert trainings[0] == {
        "feature_config_id": "ids",
        "model_config_id": "small",
        "seed": 1,
    }


def test_a_feature_config_the_grid_leaves_out_is_not_transformed():
    config = _config(include=[{"feature_config": "ids2", "model_config": "big"}])
    feature_configs, trainings = sweep.plan(config)
    assert feature_configs == ["ids2"]
    assert {(t["feature_config_id"], t["model_config_id"]) for t in trainings} == {("ids2", "big")}


def test_bind_gives_each_training_its_feature_configs_transform():
    _, trainings = sweep.plan(_config())
    bound = sweep.bind_transforms(
        trainings,
        [
            {"feature_config_id": "ids2", "uri": "gs://b/t2"},
            {"feature_config_id": "ids", "uri": "gs://b/t1"},
        ],
    )
    assert {(t["feature_config_id"], t["transform_uri"]) for t in bound} == {
        ("ids", "gs://b/t1"),
        ("ids2", "gs://b/t2"),
    }
    with pytest.raises(ValueError, match="no transform output for feature config.*ids2"):
        sweep.bind_transforms(trainings, [{"feature_config_id": "ids", "uri": "gs://b/t1"}])


def test_run_key_is_job_configs_and_seed_wherever_the_placeholder_resolved():
    config = _config()
    vertex = sweep.run_key(config, "sweep-pipeline-20261127", "ids2", "big", 2)
    assert vertex == "sweep-pipeline-20261127/ids2.big.seed2"
    # kfp.local resolves the job-name placeholder inside a loop to "<job>/<iteration>".
    local = sweep.run_key(
        config, "sweep-pipeline-20261127/for-loop-2-iteration-3", "ids2", "big", 2
    )
    assert local == vertex
    assert (
        sweep.job_name("sweep-pipeline-20261127/for-loop-2-iteration-3")
        == "sweep-pipeline-20261127"
    )
    # Defaults: the first configs and the config's seed; no job, no key.
    assert sweep.run_key(config, "job", "", "", -1) == f"job/ids.small.seed{config.training.seed}"
    assert sweep.run_key(config, "", "ids", "small", 1) == ""
