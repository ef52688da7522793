"""The compiled sweep: two loops, a parallelism limit, what is cached, what runs after failures."""

import os

import yaml

from pipelines import SPEC_DIR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _spec() -> dict:
    with open(os.path.join(REPO, SPEC_DIR, "sweep_pipeline.yaml")) as f:
        return yaml.safe_load(f)


def _loops(spec: dict) -> dict:
    return {
        name: task
        for name, task in spec["root"]["dag"]["tasks"].items()
        if "parameterIterator" in task
    }


def test_transforms_loop_over_feature_configs_and_trainings_over_the_bound_plan():
    spec = _spec()
    loops = _loops(spec)
    assert len(loops) == 2
    by_items = {
        task["parameterIterator"]["items"]["inputParameter"]: task for task in loops.values()
    }
    transforms = next(t for k, t in by_items.items() if "plan-sweep" in k)
    trainings = next(t for k, t in by_items.items() if "bind-transforms" in k)
    transform_tasks = spec["components"][transforms["componentRef"]["name"]]["dag"]["tasks"]
    assert set(transform_tasks) == {"transform-data"}
    training_tasks = spec["components"][trainings["componentRef"]["name"]]["dag"]["tasks"]
    assert {"importer", "train-model", "evaluate-model"} <= set(training_tasks)
    assert trainings["iteratorPolicy"]["parallelismLimit"] == 2
    assert "iteratorPolicy" not in transforms


def test_ingest_plan_and_transforms_cache_training_evaluation_report_and_selection_do_not():
    spec = _spec()
    root = spec["root"]["dag"]["tasks"]
    loops = _loops(spec)

    def caching(tasks, name):
        return tasks[name].get("cachingOptions", {}).get("enableCache", False)

    assert caching(root, "ingest-data") and caching(root, "plan-sweep")
    assert caching(root, "bind-transforms")
    for loop in loops.values():
        tasks = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
        if "transform-data" in tasks:
            assert caching(tasks, "transform-data")
        else:
            assert not caching(tasks, "train-model") and not caching(tasks, "evaluate-model")
    assert not caching(root, "render-report") and not caching(root, "select-best-model")


def test_report_and_best_model_run_after_every_training_whatever_its_outcome():
    root = _spec()["root"]["dag"]["tasks"]
    trainings = next(
        name for name, task in _loops(_spec()).items() if "bind-transforms" in str(task)
    )
    for name in ("render-report", "select-best-model"):
        assert root[name]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
        assert trainings in root[name]["dependentTasks"]
    # The job name reaches the tasks as a runtime placeholder that Vertex resolves.
    assert (
        root["render-report"]["inputs"]["parameters"]["highlight_pipeline_job"]["runtimeValue"][
            "constant"
        ]
        == "{{$.pipeline_job_name}}"
    )


def test_parallelism_is_a_compile_option(tmp_path):
    from pipelines.__main__ import compile_all

    compile_all(str(tmp_path), parallelism=5)
    with open(tmp_path / "sweep_pipeline.yaml") as f:
        spec = yaml.safe_load(f)
    limits = [
        t["iteratorPolicy"]["parallelismLimit"]
        for t in _loops(spec).values()
        if "iteratorPolicy" in t
    ]
    assert limits == [5]
