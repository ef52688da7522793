"""Resources, retries and the training machine, as the compiled specs say them."""

import os

import pytest
import yaml

from components import COMPONENT_IMAGE
from pipelines import SPEC_DIR, env, tasks
from pipelines.__main__ import compile_all, local_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
GPU = env.TrainMachine("n1-standard-8", "NVIDIA_TESLA_T4", 2, "7200s")
IMAGE = "europe-west4-docker.pkg.dev/my-gcp-project/pipelines/b2b-recs:1.2.3"
# Which step's limits each executor gets; plan_sweep, bind_transforms and the importer none.
STEP_OF_EXECUTOR = {
    "exec-ingest-data": "ingest",
    "exec-transform-data": "transform",
    "exec-train-model": "train",
    "exec-evaluate-model": "evaluate",
    "exec-render-report": "report",
    "exec-select-best-model": "report",
    "exec-register-model": "report",
    "exec-gate-model": "report",
    "exec-promote-model": "report",
    # The halving pipeline's trainings, one copy per rung stage (pipelines/halving.py).
    **{f"exec-train-trial{copy}": "train" for copy in ("", "-2", "-3", "-4")},
}
NAMES = ("training_pipeline", "sweep_pipeline")


def _packaged(name: str) -> dict:
    with open(os.path.join(REPO, "pipeline_specs", f"{name}.yaml")) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def gpu_specs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu")
    paths = compile_all(str(out), train_machine=GPU, image=IMAGE)
    return {os.path.basename(p)[: -len(".yaml")]: yaml.safe_load(open(p)) for p in paths}


def _tasks(spec: dict) -> dict:
    """Every step of the spec (tasks that run an executor, in any DAG), by task name."""
    components = spec["components"]
    dags = [spec["root"]["dag"]] + [c["dag"] for c in components.values() if "dag" in c]
    return {
        name: task
        for dag in dags
        for name, task in dag["tasks"].items()
        if "executorLabel" in components[task["componentRef"]["name"]]
    }


def _channel(name: str) -> str:
    return f"{{{{$.inputs.parameters['pipelinechannel--{name}']}}}}"


@pytest.mark.parametrize("name", NAMES)
def test_every_step_gets_its_limits_from_pipeline_parameters(name):
    spec = _packaged(name)
    executors = spec["deploymentSpec"]["executors"]
    for label, executor in executors.items():
        resources = executor.get("container", {}).get("resources")
        step = STEP_OF_EXECUTOR.get(label)
        if step is None:
            assert resources is None, f"{label} has limits"
            continue
        assert resources == {
            "resourceCpuLimit": _channel(f"{step}_cpu_limit"),
            "resourceMemoryLimit": _channel(f"{step}_memory_limit"),
        }, label
    assert {s for label, s in STEP_OF_EXECUTOR.items() if label in executors} == set(env.STEPS)
    params = spec["root"]["inputDefinitions"]["parameters"]
    for step in env.STEPS:
        assert params[f"{step}_cpu_limit"]["defaultValue"] == tasks.DEFAULT_CPU_LIMIT
        assert params[f"{step}_memory_limit"]["defaultValue"] == tasks.DEFAULT_MEMORY_LIMIT


@pytest.mark.parametrize("name", NAMES)
def test_every_step_retries_with_backoff_training_once(name):
    retried = {
        task_name: task["retryPolicy"]
        for task_name, task in _tasks(_packaged(name)).items()
        if task_name != "importer"
    }
    step = {"maxRetryCount": 2, "backoffDuration": "30s", "backoffFactor": 2.0}
    train = {"maxRetryCount": 1, "backoffDuration": "120s", "backoffFactor": 2.0}
    for task_name, policy in retried.items():
        expected = train if task_name == "train-model" else step
        # A long window: on Argo it bounds when a retry may still begin (tasks.py).
        assert policy == {**expected, "backoffMaxDuration": "86400s"}, task_name
    assert "train-model" in retried and "ingest-data" in retried


@pytest.mark.parametrize("name", NAMES)
def test_without_a_machine_training_is_a_plain_container_step(name):
    spec = _packaged(name)
    executor = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert executor["image"] == COMPONENT_IMAGE
    assert executor["args"][-2:] == ["--function_to_execute", "train_model"]
    assert (
        "worker_pool_specs"
        not in spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_with_a_gpu_machine_training_is_a_custom_job(name, gpu_specs):
    spec = gpu_specs[name]
    params = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    (pool,) = params["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 2,
    }
    assert pool["replica_count"] == 1
    plain = _packaged(name)["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    container = pool["container_spec"]
    assert container["image_uri"] == IMAGE
    assert container["command"] == plain["command"]
    # GCPC escapes the executor input for the job's JSON payload; otherwise the same args.
    assert container["args"] == [
        "{{$.json_escape[1]}}" if a == "{{$}}" else a for a in plain["args"]
    ]
    assert params["timeout"]["defaultValue"] == "7200s"
    # The job runs as the pipeline's service account, in its network, project and region.
    assert params["service_account"]["defaultValue"] == "{{$.pipeline_service_account}}"
    assert params["network"]["defaultValue"] == "{{$.pipeline_network}}"
    assert params["project"]["defaultValue"] == "{{$.pipeline_google_cloud_project_id}}"
    assert params["location"]["defaultValue"] == "{{$.pipeline_google_cloud_location}}"
    launcher = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert launcher["command"][-1] == (
        "google_cloud_pipeline_components.container.v1.custom_job.launcher"
    )
    assert "resources" not in launcher, "the launcher needs no limits; the machine decides"
    # The other steps are unchanged and run in the new image.
    for label in ("exec-ingest-data", "exec-evaluate-model"):
        assert spec["deploymentSpec"]["executors"][label]["container"]["image"] == IMAGE


@pytest.mark.parametrize("name", NAMES)
def test_the_custom_job_gets_the_same_inputs_and_restarts_inside_vertex(name, gpu_specs):
    plain = _tasks(_packaged(name))["train-model"]
    job = _tasks(gpu_specs[name])["train-model"]
    # The plain step's extra inputs are what its limits read (the custom job has none).
    limits = {"cpu_limit", "memory_limit"} | {
        f"pipelinechannel--train_{r}" for r in ("cpu_limit", "memory_limit")
    }
    plain_parameters = {k: v for k, v in plain["inputs"]["parameters"].items() if k not in limits}
    assert job["inputs"]["parameters"] == plain_parameters
    assert job["inputs"]["artifacts"] == plain["inputs"]["artifacts"]
    assert {"examples", "transform_graph"} <= set(job["inputs"]["artifacts"])
    params = job["inputs"]["parameters"]
    assert params["pipeline_job"]["runtimeValue"]["constant"] == "{{$.pipeline_job_name}}"
    assert params["pipeline_task"]["runtimeValue"]["constant"] == "{{$.pipeline_task_name}}"
    if name == "sweep_pipeline":
        assert params["seed"]["parameterExpressionSelector"] == 'parseJson(string_value)["seed"]'
    # A retried launcher would re-poll the failed job (GCPC reuses gcp_resources): no pipeline
    # retry; the job itself restarts a worker whose VM restarts.
    assert "retryPolicy" in plain and "retryPolicy" not in job
    job_params = gpu_specs[name]["components"]["comp-train-model"]["inputDefinitions"]
    assert job_params["parameters"]["restart_job_on_worker_restart"]["defaultValue"] is True
    assert job["cachingOptions"] == plain["cachingOptions"] == {}
    plain_outputs = _packaged(name)["components"]["comp-train-model"]["outputDefinitions"]
    job_outputs = gpu_specs[name]["components"]["comp-train-model"]["outputDefinitions"]
    assert job_outputs["artifacts"] == plain_outputs["artifacts"]


def test_a_cpu_machine_has_no_accelerator(tmp_path):
    machine = env.TrainMachine("n2-highmem-16", "", 0, "86400s")
    (path,) = compile_all(str(tmp_path), train_machine=machine, names=("training_pipeline",))
    spec = yaml.safe_load(open(path))
    params = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    (pool,) = params["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"] == {"machine_type": "n2-highmem-16"}
    assert pool["container_spec"]["image_uri"] == COMPONENT_IMAGE


@pytest.mark.parametrize("name", NAMES)
def test_kfp_local_runs_the_packaged_spec_retries_and_limits_included(name, tmp_path):

    component = local_pipeline(name, None, str(tmp_path))
    with open(tmp_path / "run_spec" / f"{name}.yaml", encoding="utf-8") as f:
        ran = f.read()
    with open(os.path.join(REPO, SPEC_DIR, f"{name}.yaml"), encoding="utf-8") as f:
        assert ran == f.read()
    spec = yaml.safe_load(ran)
    assert [t for t, task in _tasks(spec).items() if "retryPolicy" in task]
    executors = spec["deploymentSpec"]["executors"].values()
    assert [e for e in executors if "resources" in e.get("container", {})]
    assert component.name == name.replace("_", "-")
    # What kfp.local loads: the same spec, retries kept, their waits (slept locally) at 0 s.
    with open(tmp_path / "run_spec" / f"{name}.local.yaml", encoding="utf-8") as f:
        local = yaml.safe_load(f)
    retried = {t: task["retryPolicy"] for t, task in _tasks(spec).items() if "retryPolicy" in task}
    local_retried = {
        t: task["retryPolicy"] for t, task in _tasks(local).items() if "retryPolicy" in task
    }
    assert local_retried == {
        t: {**policy, "backoffDuration": "0s"} for t, policy in retried.items()
    }
    for policy in retried.values():
        policy["backoffDuration"] = "0s"
    assert local == spec  # nothing else differs


def test_the_training_machines_scheduling_strategy_reaches_the_custom_job(tmp_path):
    spot = env.TrainMachine("n1-standard-8", "", 0, "86400s", scheduling_strategy="SPOT")
    (path,) = compile_all(str(tmp_path), train_machine=spot, names=("training_pipeline",))
    params = yaml.safe_load(open(path))["components"]["comp-train-model"]["inputDefinitions"]
    assert params["parameters"]["strategy"]["defaultValue"] == "SPOT"


def test_the_custom_job_names_its_machine_to_the_step_and_carries_the_envs_labels(tmp_path):
    from trainer import contract, cost

    spot = env.TrainMachine(
        "g2-standard-8",
        "NVIDIA_L4",
        1,
        "86400s",
        scheduling_strategy="SPOT",
        labels=(("team", "recs"), ("env", "dev")),
    )
    (path,) = compile_all(str(tmp_path), train_machine=spot, names=("training_pipeline",))
    params = yaml.safe_load(open(path))["components"]["comp-train-model"]["inputDefinitions"]
    params = params["parameters"]
    # Vertex adds the pipeline run's labels (its billing id) to the job by itself.
    assert params["labels"]["defaultValue"] == {"team": "recs", "env": "dev"}
    (pool,) = params["worker_pool_specs"]["defaultValue"]
    variables = {v["name"]: v["value"] for v in pool["container_spec"]["env"]}
    assert variables == {
        contract.ENV_MACHINE_TYPE: "g2-standard-8",
        contract.ENV_ACCELERATOR_TYPE: "NVIDIA_L4",
        contract.ENV_ACCELERATOR_COUNT: "1",
        contract.ENV_SCHEDULING: "SPOT",
    }
    # What the step then records (and prices) is that machine.
    machine = cost.detect_machine(variables)
    assert machine == cost.Machine("g2-standard-8", 8.0, "NVIDIA_L4", 1, "SPOT")


def test_a_plain_training_step_names_no_machine_and_no_labels():
    spec = _packaged("training_pipeline")
    container = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert "env" not in container
    assert "labels" not in spec["components"]["comp-train-model"]["inputDefinitions"].get(
        "parameters", {}
    )


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_gets_the_transform_output_and_the_price_overrides(name):
    spec = _packaged(name)
    task = _tasks(spec)["evaluate-model"]
    # The transform's step record lives in its output, which the evaluation reads its cost from.
    source = task["inputs"]["artifacts"]["transform_graph"]
    producer = source.get("taskOutputArtifact", {}).get("producerTask") or source.get(
        "componentInputArtifact"
    )
    assert producer in ("transform-data", "importer", "pipelinechannel--importer-artifact")
    prices = task["inputs"]["parameters"]["prices"]
    assert prices["componentInputParameter"] in ("prices", "pipelinechannel--prices")
    declared = spec["root"]["inputDefinitions"]["parameters"]["prices"]
    assert declared["defaultValue"] == {} and declared["parameterType"] == "STRUCT"
    assert "price table" in declared["description"]  # the docstring reaches the Vertex UI
