"""Successive halving's stages and the selection between rungs, on a real SQLite MLflow store."""

import logging
import shutil

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_CONFIG
from trainer import config as cfg
from trainer import contract, sweep

JOB = "halving-pipeline-20261203120000"
SPACE = "    dropout: {uniform: [0.0, 0.3]}\n"
PLAIN_MODEL = "    learning_rate: 0.2\n"


def _config(search: str = "", epochs: int = 4) -> cfg.ExperimentConfig:
    text = TINY_CONFIG.format(source="/data/x.csv").replace(PLAIN_MODEL, PLAIN_MODEL + SPACE)
    text = text.replace("epochs: 2", f"epochs: {epochs}")
    search = search or "search: {strategy: halving, trials: 9, seed: 3, eta: 2, min_epochs: 1}\n"
    return cfg.parse_config_text(text + search, source="exp.yaml")


def _trainings(config: cfg.ExperimentConfig) -> list[dict]:
    """The bound plan as a KFP list parameter hands it on: through JSON, the seed a float."""
    _, trainings = sweep.plan(config)
    bound = sweep.bind_transforms(trainings, [{"feature_config_id": "ids", "uri": "/xf/ids"}])
    return [{**t, "seed": float(t["seed"])} for t in bound]


def test_rungs_fill_the_last_stages_and_the_first_ones_stay_empty():
    config = _config()
    assert [(r.epochs, r.runs) for r in config.rungs] == [(1, 9), (2, 4), (4, 2)]
    # 4 stages compiled: the first is unused, rungs 1 and 2 follow, the final one is rung 3.
    assert sweep.stage_rungs(config, 4) == [0, 1, 2]
    assert sweep.stage_rungs(config, 3) == [1, 2]
    grid = _config("search: {strategy: random, trials: 3, seed: 3}\n")
    assert sweep.stage_rungs(grid, 4) == [0, 0, 0]


def test_more_rungs_than_stages_is_refused_naming_the_compile_option():
    config = _config("search: {strategy: halving, trials: 9, seed: 3, eta: 2, min_epochs: 1}\n", 8)
    assert len(config.rungs) == 4
    with pytest.raises(sweep.RungStagesError) as info:
        sweep.stage_rungs(config, 3)
    assert "4 rungs (1, 2, 4, 8 epochs)" in str(info.value)
    assert "--rungs" in str(info.value)


def test_an_unused_stage_trains_nothing_and_the_one_before_rung_1_hands_on_every_trial():
    config = _config()
    trainings = _trainings(config)
    # No MLflow is read: nothing was trained before rung 1.
    assert sweep.advance(config, trainings, 0, 4, "sqlite:///nowhere.db", JOB) == []
    first = sweep.advance(config, trainings, 1, 4, "sqlite:///nowhere.db", JOB)
    assert len(first) == 9
    assert first[0] == {**trainings[0], sweep.RUNG: 1, sweep.RESUME_FROM: ""}


def test_a_config_that_is_not_halving_trains_every_run_in_the_final_stage():
    config = _config("search: {strategy: random, trials: 3, seed: 3}\n")
    trainings = _trainings(config)
    for stage in range(3):
        assert sweep.advance(config, trainings, stage, 4, "sqlite:///nowhere.db", JOB) == []
    final = sweep.advance(config, trainings, 3, 4, "sqlite:///nowhere.db", JOB)
    assert [t[sweep.RUNG] for t in final] == [0, 0, 0]
    assert [t[sweep.RESUME_FROM] for t in final] == ["", "", ""]


@pytest.fixture(scope="module")
def _empty_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # migrating takes seconds
    return path


@pytest.fixture
def store(_empty_store, tmp_path) -> str:
    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def _sweep_store(store: str):
    """The halving config, its bound trainings, a client of ``store`` and the experiment's id."""
    config = _config()
    client = MlflowClient(store)
    return config, _trainings(config), client, client.create_experiment(config.experiment)


def _rung_run(client, eid, config, training, value, *, job=JOB, rung=1, status="FINISHED"):
    """A trial's run as a rung's training leaves it (trainer/train/record.rung_tags)."""
    key = sweep.run_key(
        config,
        job,
        training["feature_config_id"],
        training["model_config_id"],
        int(training["seed"]),  # the training step's seed is an int parameter
    )
    tags = {
        contract.TAG_RUN_KEY: key,
        contract.TAG_PIPELINE_JOB: job,
        contract.TAG_MODEL_URI: f"/root/{key}/model",
        contract.TAG_HALVING_RUNG: str(rung),
        contract.TAG_HALVING_RUNGS: str(len(config.rungs)),
        contract.TAG_HALVING_EPOCHS: "1",
        contract.halving_rung_value_tag(rung): f"{value:.6f}",
        contract.TAG_HALVING_STATUS: contract.HALVING_TRAINED,
    }
    run_id = client.create_run(eid, run_name=key, tags=tags).info.run_id
    client.set_terminated(run_id, status)
    return run_id


def test_after_rung_1_the_best_go_on_from_their_checkpoints_and_the_rest_are_stopped_finished(
    store, caplog
):
    config, trainings, client, eid = _sweep_store(store)
    values = [0.30, 0.10, 0.25, 0.40, 0.20, 0.25, float("nan"), 0.35]
    ids = [_rung_run(client, eid, config, t, v) for t, v in zip(trainings, values, strict=False)]
    # Neither a failed run nor a run of another pipeline job takes a place.
    ids.append(_rung_run(client, eid, config, trainings[8], 0.98, status="FAILED"))
    _rung_run(client, eid, config, trainings[1], 0.99, job="halving-pipeline-other")

    with caplog.at_level(logging.ERROR):
        kept = sweep.advance(config, trainings, 2, 4, store, JOB)

    # 4 of 9 go on (config.rungs), best first; 0.25 twice: the earlier trial of the plan wins.
    assert [trainings.index({k: t[k] for k in trainings[0]}) for t in kept] == [3, 7, 0, 2]
    for item in kept:
        assert item[sweep.RUNG] == 2
        key = sweep.run_key(
            config, JOB, item["feature_config_id"], item["model_config_id"], int(item["seed"])
        )
        assert item[sweep.RESUME_FROM] == f"/root/{key}/model"
    assert "1 trial(s) have no finished run" in caplog.text

    runs = {i: client.get_run(i) for i in ids}
    for i in (3, 7, 0, 2):
        tags = runs[ids[i]].data.tags
        assert tags[contract.TAG_HALVING_STATUS] == contract.HALVING_CONTINUED
        assert runs[ids[i]].info.status == contract.STATUS_FINISHED
    stopped = runs[ids[5]]
    assert stopped.info.status == contract.STATUS_FINISHED
    assert stopped.data.tags[contract.TAG_HALVING_STATUS] == contract.HALVING_STOPPED
    assert stopped.data.tags[contract.TAG_HALVING_REASON] == (
        "rung 1 of 3: val_recall_at_100 0.2500 tied with the 4th best 0.2500, the earlier "
        "trial kept (the best 4 of 8 go on)"
    )
    assert "val_recall_at_100 nan below" in runs[ids[6]].data.tags[contract.TAG_HALVING_REASON]
    assert runs[ids[4]].data.tags[contract.TAG_HALVING_REASON] == (
        "rung 1 of 3: val_recall_at_100 0.2000 below the 4th best 0.2500 (the best 4 of 8 go on)"
    )
    for i in (1, 4, 6):
        assert runs[ids[i]].data.tags[contract.TAG_HALVING_STATUS] == contract.HALVING_STOPPED
    assert runs[ids[8]].info.status == contract.STATUS_FAILED
    assert contract.TAG_HALVING_REASON not in runs[ids[8]].data.tags


def test_judging_a_rung_again_gives_the_same_verdicts(store):
    config, trainings, client, eid = _sweep_store(store)
    for training, value in zip(trainings, [0.1 * (i % 4) for i in range(9)], strict=True):
        _rung_run(client, eid, config, training, value)
    first = sweep.advance(config, trainings, 2, 4, store, JOB)
    again = sweep.advance(config, trainings, 2, 4, store, JOB)  # a retried step
    assert first == again and len(first) == 4


def test_after_the_last_short_rung_the_kept_trials_go_to_the_final_stage(store):
    config, trainings, client, eid = _sweep_store(store)
    for training, value in zip(trainings[:4], [0.2, 0.4, 0.1, 0.3], strict=True):
        _rung_run(client, eid, config, training, value, rung=2)
    final = sweep.advance(config, trainings, 3, 4, store, JOB)
    assert [t[sweep.RUNG] for t in final] == [3, 3]
    assert [t["model_config_id"] for t in final] == [
        trainings[1]["model_config_id"],
        trainings[3]["model_config_id"],
    ]


def test_a_stopped_trial_gets_the_cost_of_its_rungs_and_a_kept_one_waits_for_evaluate(
    store, tmp_path
):
    from trainer import cost

    config, trainings, client, eid = _sweep_store(store)
    ids = []
    machine = cost.Machine("n1-standard-8", 8.0)
    for i, (training, value) in enumerate(zip(trainings, [0.1 * i for i in range(9)], strict=True)):
        run_id = _rung_run(client, eid, config, training, value)
        folder = tmp_path / f"trial{i}"
        cost.write_record(str(folder), cost.StepRecord("train", 360.0 + i, machine, f"t{i}"))
        client.set_tag(run_id, contract.TAG_MODEL_URI, str(folder))
        ids.append(run_id)
    kept = sweep.advance(config, trainings, 2, 4, store, JOB, prices={"vcpu_hour": 0.5})
    assert len(kept) == 4  # trials 8, 7, 6, 5
    hourly = cost.load_prices({"vcpu_hour": 0.5}).hourly(machine)[0]
    for i, run_id in enumerate(ids):
        run = client.get_run(run_id)
        if i >= 5:  # kept: its cost comes with its evaluation, from the last rung's record
            assert contract.COST_USD not in run.data.metrics
            continue
        assert run.data.tags[contract.TAG_HALVING_STATUS] == contract.HALVING_STOPPED
        assert run.data.metrics[contract.COST_MACHINE_SECONDS] == 360.0 + i
        assert run.data.metrics[contract.COST_USD] == pytest.approx(
            hourly * (360 + i) / 3600, abs=1e-6
        )
        assert run.data.tags[contract.cost_machine_tag("train")] == "n1-standard-8"
        assert "no record of" in run.data.tags[contract.TAG_COST_PRICES]  # never evaluated
