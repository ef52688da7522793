"""The compiled halving pipeline: rung stages fixed at compile time, judged through MLflow."""

import os
import re

import pytest
import yaml

from pipelines import SPEC_DIR
from pipelines.halving import DEFAULT_RUNG_STAGES, make_halving_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
ALL_COMPLETED = {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}


def _spec(name: str = "halving_pipeline") -> dict:
    with open(os.path.join(REPO, SPEC_DIR, f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def _loop_tasks(spec: dict, loop: str) -> dict:
    return spec["components"][spec["root"]["dag"]["tasks"][loop]["componentRef"]["name"]]["dag"][
        "tasks"
    ]


def _named(tasks: dict) -> dict:
    """A loop's tasks by component name (the compiler numbers the copies: train-trial-2)."""
    return {re.sub(r"-\d+$", "", name): task for name, task in tasks.items()}


def _chain(spec: dict) -> list[tuple[str, str]]:
    """(advance task, the loop over its output) in stage order, then the final loop."""
    root = spec["root"]["dag"]["tasks"]
    out = []
    for name, task in root.items():
        items = task.get("parameterIterator", {}).get("items", {}).get("inputParameter", "")
        if items.startswith("pipelinechannel--advance-rung"):
            out.append((items.removeprefix("pipelinechannel--").removesuffix("-Output"), name))
    return sorted(out, key=lambda pair: int(pair[1].rsplit("-", 1)[1]))


def test_each_stage_loops_over_an_advance_step_that_waits_for_the_stage_before_whatever_it_did():
    spec = _spec()
    root = spec["root"]["dag"]["tasks"]
    chain = _chain(spec)
    assert len(chain) == DEFAULT_RUNG_STAGES  # the rung stages, the final one included
    assert chain[0][0] == "advance-rung"
    assert root["advance-rung"]["dependentTasks"] == ["bind-transforms"]
    for (_, loop), (advance, _) in zip(chain, chain[1:], strict=False):
        # After a stage, by dependency only (a stage may be empty: no dsl.Collected of it).
        assert loop in root[advance]["dependentTasks"]
        assert root[advance]["triggerPolicy"] == ALL_COMPLETED
        assert set(root[advance]["inputs"]["parameters"]) == {
            "config_yaml",
            "mlflow_tracking_uri",
            "stage",
            "stages",
            "trainings",
            "pipeline_job",
            "prices",  # the stopped trials' cost
        }
    stages = [
        root[advance]["inputs"]["parameters"]["stage"]["runtimeValue"]["constant"]
        for advance, _ in chain
    ]
    assert stages == list(range(DEFAULT_RUNG_STAGES))
    for advance, _ in chain:
        assert root[advance]["cachingOptions"] == {}  # reads and tags MLflow: never cached


def test_a_rung_stage_trains_each_item_from_its_checkpoint_and_the_final_one_also_evaluates():
    spec = _spec()
    chain = _chain(spec)
    for _, loop in chain[:-1]:
        tasks = _named(_loop_tasks(spec, loop))
        assert set(tasks) == {"importer", "train-trial"}
        params = tasks["train-trial"]["inputs"]["parameters"]
        for field in ("rung", "resume_from", "feature_config_id", "model_config_id", "seed"):
            assert params[field]["parameterExpressionSelector"] == (
                f'parseJson(string_value)["{field}"]'
            )
        assert tasks["train-trial"]["cachingOptions"] == {}
    final = _named(_loop_tasks(spec, chain[-1][1]))
    assert {"train-trial", "evaluate-model"} <= set(final)
    assert "resume_from" in final["train-trial"]["inputs"]["parameters"]
    # The report and the best model wait for the final stage, whatever its outcome.
    root = spec["root"]["dag"]["tasks"]
    for name in ("render-report", "select-best-model"):
        assert chain[-1][1] in root[name]["dependentTasks"]
        assert root[name]["triggerPolicy"] == ALL_COMPLETED


def test_rung_stages_are_a_compile_option(tmp_path):
    from pipelines.__main__ import main

    assert main(["compile", "--rungs", "2", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "halving_pipeline.yaml") as f:
        spec = yaml.safe_load(f)
    assert len(_chain(spec)) == 2
    with pytest.raises(ValueError, match="at least 2 rung stages"):
        make_halving_pipeline(stages=1)


def test_the_grid_sweep_has_no_rung_stages():
    spec = _spec("sweep_pipeline")
    assert not any(name.startswith("advance-rung") for name in spec["root"]["dag"]["tasks"])
    assert "comp-train-trial" not in spec["components"]


HALVING_SEARCH = "search: {strategy: halving, trials: 4, seed: 1, eta: 2, min_epochs: 1}\n"


def _halving_config(tmp_path, epochs: int = 4) -> str:
    from tests.conftest import TINY_CONFIG

    text = TINY_CONFIG.format(source=tmp_path / "none.csv").replace(
        "    learning_rate: 0.2\n", "    learning_rate: {loguniform: [0.01, 0.3]}\n"
    )
    path = tmp_path / "halving.yaml"
    path.write_text(text.replace("epochs: 2", f"epochs: {epochs}") + HALVING_SEARCH)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pipeline", "sweep"], "search.strategy: halving trains in rungs: run it with"),
        (["--pipeline", "halving", "--rungs", "2"], "3 rungs (1, 2, 4 epochs), more than the 2"),
    ],
)
def test_run_refuses_a_halving_config_it_cannot_train_in_rungs_before_anything_runs(
    tmp_path, capsys, argv, expected
):
    from pipelines.__main__ import main

    config = _halving_config(tmp_path)
    base = ["run", "--config", config, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    assert main([*base, *argv, "--local-root", str(tmp_path / "local")]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "local").exists()
