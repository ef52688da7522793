"""Every reference in a compiled spec resolves, as a strict backend (Vertex AI) resolves it.

kfp compiles a DAG (the root, a ParallelFor's body) into a component whose tasks may read only
what that component declares (``componentInputParameter`` / ``componentInputArtifact``) or
what a sibling task declares as an output (``taskOutputParameter`` / ``taskOutputArtifact``).
A name that is not there fails the run on its first submission ("parent DAG does not have
input parameter ..."), and nothing local sees it: kfp.local sets no limits and runs no spec.
``spec_problems`` lists such names; the tests run it on the packaged specs and on every
variant that ``python -m pipelines compile --env NAME`` and ``submit`` produce.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

from pipelines import PIPELINES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
EXAMPLE_ENV = os.path.join(REPO, "configs", "env", "example.yaml")
SPEC_NAMES = tuple(sorted(PIPELINES))

# Runtime placeholders a backend substitutes from the executor input (kfp/dsl/placeholders.py).
_PLACEHOLDER = re.compile(r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\]")
# A trigger condition reads the task's own inputs (kfp/compiler/pipeline_spec_builder.py).
_CONDITION_INPUT = re.compile(r"inputs\.(parameter_values|artifacts)\['([^']+)'\]")


def _strings(value, where: str = ""):
    """(path, string) for every string nested in a YAML value."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _declared(component: dict, kind: str, section: str = "inputDefinitions") -> dict:
    return (component.get(section) or {}).get(kind) or {}


def _task_problems(dag_name, dag_component, tasks, task_name, task, components) -> list[str]:
    at = f"{dag_name} / task {task_name}"
    problems = []
    ref = (task.get("componentRef") or {}).get("name", "")
    child = components.get(ref)
    if child is None:
        problems.append(f"{at}: componentRef {ref!r} is not in components")
    own_inputs = {
        "parameters": (task.get("inputs") or {}).get("parameters") or {},
        "artifacts": (task.get("inputs") or {}).get("artifacts") or {},
    }
    for kind, key, out_key in (
        ("parameters", "Parameter", "outputParameterKey"),
        ("artifacts", "Artifact", "outputArtifactKey"),
    ):
        for name, spec in own_inputs[kind].items():
            where = f"{at}: inputs.{kind}[{name!r}]"
            source = spec.get(f"componentInput{key}")
            if source is not None and source not in _declared(dag_component, kind):
                problems.append(
                    f"{where} reads componentInput{key} {source!r}, which {dag_name} does not "
                    f"declare in inputDefinitions.{kind}"
                )
            output = spec.get(f"taskOutput{key}")
            if output is not None:
                problems += _output_problems(
                    where, output.get("producerTask"), output.get(out_key), kind, tasks, components
                )
            status = spec.get("taskFinalStatus")
            if status is not None and status.get("producerTask") not in tasks:
                problems.append(
                    f"{where}: taskFinalStatus of {status.get('producerTask')!r}, not a task "
                    f"of {dag_name}"
                )
            # A constant may embed placeholders of the task's own inputs (kfp writes a
            # limit set from a pipeline parameter so: '{{$.inputs.parameters[...]}}').
            constant = (spec.get("runtimeValue") or {}).get("constant")
            for path, text in _strings(constant, "runtimeValue.constant"):
                for io, pkind, pname in _PLACEHOLDER.findall(text):
                    if io == "inputs" and pname not in own_inputs[pkind]:
                        problems.append(
                            f"{where}.{path} has a placeholder of {pkind[:-1]} {pname!r}, "
                            f"which is not an input of the task"
                        )
    for dep in task.get("dependentTasks") or []:
        if dep not in tasks:
            problems.append(f"{at}: dependentTasks names {dep!r}, not a task of {dag_name}")
    item_inputs = set()
    for field, items_key, kind in (
        ("parameterIterator", "inputParameter", "parameters"),
        ("artifactIterator", "inputArtifact", "artifacts"),
    ):
        iterator = task.get(field)
        if not iterator:
            continue
        items = (iterator.get("items") or {}).get(items_key)
        if items is not None and items not in own_inputs[kind]:
            problems.append(
                f"{at}: {field}.items.{items_key} {items!r} is not an input of the task"
            )
        item = iterator.get("itemInput")
        item_inputs.add(item)
        if child is not None and item not in _declared(child, kind):
            problems.append(f"{at}: {field}.itemInput {item!r} is not an input of {ref}")
    condition = (task.get("triggerPolicy") or {}).get("condition") or ""
    for kind, name in _CONDITION_INPUT.findall(condition):
        kind = "parameters" if kind == "parameter_values" else kind
        if name not in own_inputs[kind]:
            problems.append(
                f"{at}: triggerPolicy.condition reads {kind[:-1]} {name!r}, not an input of "
                f"the task"
            )
    if child is not None:
        # The other way round: what the child component requires, the task must give.
        for kind in ("parameters", "artifacts"):
            for name, definition in _declared(child, kind).items():
                optional = definition.get("isOptional") or "defaultValue" in definition
                if not optional and name not in own_inputs[kind] and name not in item_inputs:
                    problems.append(f"{at}: {ref} requires {kind[:-1]} {name!r}; none is given")
    return problems


def _output_problems(where, producer, key, kind, tasks, components) -> list[str]:
    if producer not in tasks:
        return [f"{where} reads an output of {producer!r}, which is not a sibling task"]
    ref = (tasks[producer].get("componentRef") or {}).get("name", "")
    outputs = _declared(components.get(ref) or {}, kind, "outputDefinitions")
    if key not in outputs:
        return [f"{where} reads output {key!r} of {producer}, which {ref} does not declare"]
    return []


def _dag_output_problems(dag_name, component, tasks, components) -> list[str]:
    problems = []
    outputs = (component["dag"].get("outputs")) or {}
    declared = {
        k: _declared(component, k, "outputDefinitions") for k in ("parameters", "artifacts")
    }
    for name, spec in (outputs.get("parameters") or {}).items():
        where = f"{dag_name}: dag.outputs.parameters[{name!r}]"
        selectors = [spec["valueFromParameter"]] if "valueFromParameter" in spec else []
        selectors += (spec.get("valueFromOneof") or {}).get("parameterSelectors") or []
        for selector in selectors:
            problems += _output_problems(
                where,
                selector.get("producerSubtask"),
                selector.get("outputParameterKey"),
                "parameters",
                tasks,
                components,
            )
        if name not in declared["parameters"]:
            problems.append(f"{where} is not declared in {dag_name}'s outputDefinitions")
    for name, spec in (outputs.get("artifacts") or {}).items():
        where = f"{dag_name}: dag.outputs.artifacts[{name!r}]"
        for selector in spec.get("artifactSelectors") or []:
            problems += _output_problems(
                where,
                selector.get("producerSubtask"),
                selector.get("outputArtifactKey"),
                "artifacts",
                tasks,
                components,
            )
        if name not in declared["artifacts"]:
            problems.append(f"{where} is not declared in {dag_name}'s outputDefinitions")
    for kind in ("parameters", "artifacts"):
        for name in sorted(set(declared[kind]) - set(outputs.get(kind) or {})):
            problems.append(
                f"{dag_name}: outputDefinitions.{kind}[{name!r}] is produced by no task"
            )
    return problems


def _executor_problems(spec: dict, users: dict) -> list[str]:
    """Placeholders of each executor (resources, image, command, args, env) name inputs.

    An executor's ``{{$.inputs.parameters['X']}}`` (e.g. ``resources.resourceCpuLimit``) is
    resolved from the executor input: X must be declared by its component or given by every
    task that runs it (kfp gives a limit's pipeline channel as an extra task input).
    """
    problems = []
    components = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    for label, executor in sorted(executors.items()):
        owners = [(n, c) for n, c in components.items() if c.get("executorLabel") == label]
        if not owners:
            continue
        for comp_name, component in owners:
            tasks = users.get(comp_name, [])
            container = executor.get("container") or {}
            for path, text in _strings(container, "container"):
                for io, kind, name in _PLACEHOLDER.findall(text):
                    section = "inputDefinitions" if io == "inputs" else "outputDefinitions"
                    if name in _declared(component, kind, section):
                        continue
                    if io == "outputs":
                        problems.append(
                            f"executor {label}: {path} names output {kind[:-1]} {name!r}, "
                            f"which {comp_name} does not declare"
                        )
                        continue
                    lacking = [
                        f"{dag} / {task_name}"
                        for dag, task_name, task in tasks
                        if name not in ((task.get("inputs") or {}).get(kind) or {})
                    ]
                    if lacking or not tasks:
                        problems.append(
                            f"executor {label}: {path} names input {kind[:-1]} {name!r}, which "
                            f"{comp_name} does not declare and "
                            f"{', '.join(lacking) or 'no task'} does not give"
                        )
            importer = executor.get("importer") or {}
            runtime = (importer.get("artifactUri") or {}).get("runtimeParameter")
            if runtime is not None and runtime not in _declared(component, "parameters"):
                problems.append(
                    f"executor {label}: importer.artifactUri.runtimeParameter {runtime!r} is "
                    f"not an input of {comp_name}"
                )
    for name, component in components.items():
        label = component.get("executorLabel")
        if label is not None and label not in executors:
            problems.append(f"{name}: executorLabel {label!r} is not in deploymentSpec.executors")
    return problems


def spec_problems(spec: dict) -> list[str]:
    """What a strict backend could not resolve in a compiled pipeline spec; empty when none.

    Checks every DAG (the root and each component with a ``dag``): each task's component
    exists; its inputs (parameters, artifacts, iterators, trigger conditions, placeholders in
    constants) read inputs this DAG's component declares or outputs a sibling's component
    declares; ``dependentTasks`` are siblings; the child's required inputs are given; the
    DAG's outputs come from siblings' declared outputs. Then every executor's placeholders
    (``resources.resourceCpuLimit``, ``resourceMemoryLimit``, accelerator fields, image,
    command, args) name inputs of its component or of each task that runs it.

    Args:
        spec: The pipeline spec (the first YAML document of a compiled file), or the
            ``pipelineSpec`` of a job request.

    Returns:
        One line per problem, naming the DAG, the task and the reference.
    """
    components = spec.get("components") or {}
    dags = _dags(spec)
    problems = []
    users: dict[str, list] = {}
    for dag_name, component in dags.items():
        tasks = component["dag"].get("tasks") or {}
        for task_name, task in sorted(tasks.items()):
            ref = (task.get("componentRef") or {}).get("name", "")
            users.setdefault(ref, []).append((dag_name, task_name, task))
            problems += _task_problems(dag_name, component, tasks, task_name, task, components)
        problems += _dag_output_problems(dag_name, component, tasks, components)
    return problems + _executor_problems(spec, users)


def root_parameter(spec: dict, dag_name: str, task: dict, input_name: str) -> str | None:
    """The root (pipeline) parameter a task's input parameter reads, through every DAG.

    None when it reads something else: a task output, a constant, a loop item.
    """
    source = (task.get("inputs") or {}).get("parameters", {}).get(input_name, {})
    name = source.get("componentInputParameter")
    if name is None or dag_name == "root":
        return name
    (parent_dag, parent), *more = [
        (dag, t)
        for dag, component in _dags(spec).items()
        for t in (component["dag"].get("tasks") or {}).values()
        if t["componentRef"]["name"] == dag_name
    ]
    assert not more, f"{dag_name} is run by more than one task"
    return root_parameter(spec, parent_dag, parent, name)


def _dags(spec: dict) -> dict:
    components = spec.get("components") or {}
    return {"root": spec["root"], **{n: c for n, c in sorted(components.items()) if "dag" in c}}


def load_spec(path: str) -> dict:
    """The pipeline spec of a compiled file (a platform spec may follow it)."""
    with open(path, encoding="utf-8") as f:
        return next(yaml.safe_load_all(f))


def _report(label: str, problems: list[str]) -> str:
    return f"{label}: {len(problems)} unresolved reference(s):\n  " + "\n  ".join(problems)


# --- the specs: packaged, `compile --env`, `submit` ---------------------------------------


def _env_without_custom_job(folder) -> str:
    """The example environment with no training machine (training as a plain step)."""
    with open(EXAMPLE_ENV, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data["train"] = {}
    path = os.path.join(str(folder), "cpu.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return path


@pytest.fixture(scope="module")
def env_files(tmp_path_factory) -> dict[str, str]:
    """Environment files by variant: the example (GPU custom job) and one without it."""
    return {
        "example": EXAMPLE_ENV,
        "no-custom-job": _env_without_custom_job(tmp_path_factory.mktemp("env")),
    }


@pytest.fixture(scope="module")
def compiled_env_specs(env_files, tmp_path_factory) -> dict[str, str]:
    """``python -m pipelines compile --env FILE`` of each variant: spec path by label."""
    from pipelines.__main__ import main

    paths = {}
    for variant, env_file in env_files.items():
        out = tmp_path_factory.mktemp(f"compile-{variant}")
        assert main(["compile", "--env", env_file, "--out", str(out)]) == 0
        for name in SPEC_NAMES:
            paths[f"compile --env {variant}: {name}"] = str(out / f"{name}.yaml")
    return paths


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_packaged_specs_resolve(name):
    path = os.path.join(REPO, "pipeline_specs", f"{name}.yaml")
    problems = spec_problems(load_spec(path))
    assert not problems, _report(f"pipeline_specs/{name}.yaml", problems)


def test_compile_env_variants_resolve(compiled_env_specs):
    assert len(compiled_env_specs) == 2 * len(SPEC_NAMES)
    failures = [
        _report(label, problems)
        for label, path in sorted(compiled_env_specs.items())
        if (problems := spec_problems(load_spec(path)))
    ]
    assert not failures, "\n".join(failures)
    # The example's variant is the custom-job one; the other trains as a plain step.
    example = load_spec(compiled_env_specs["compile --env example: sweep_pipeline"])
    plain = load_spec(compiled_env_specs["compile --env no-custom-job: sweep_pipeline"])
    train_inputs = "components", "comp-train-model", "inputDefinitions", "parameters"
    assert "worker_pool_specs" in _get(example, train_inputs)
    assert "worker_pool_specs" not in _get(plain, train_inputs)


def _get(spec: dict, keys) -> dict:
    for key in keys:
        spec = spec[key]
    return spec


@pytest.fixture
def offline_submit(monkeypatch, captured):
    """Anonymous credentials; the captured CreatePipelineJob requests (fakes.py)."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setattr(
        google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "my-gcp-project")
    )
    return captured


@pytest.mark.parametrize("variant", ["example", "no-custom-job"])
@pytest.mark.parametrize("pipeline", ["sweep", "training"])
def test_submitted_specs_resolve(variant, pipeline, env_files, offline_submit, tmp_path):
    """The spec ``submit`` sends, as the request carries it (compiled or packaged)."""
    import json

    from google.protobuf import json_format

    from pipelines.__main__ import main
    from tests.conftest import TINY_CONFIG

    config = tmp_path / "experiment.yaml"
    # A gs:// source: nothing is uploaded, nothing else is needed offline.
    config.write_text(TINY_CONFIG.format(source="gs://bkt/data/tiny.csv.gz"), encoding="utf-8")
    argv = ["submit", "--env", env_files[variant], "--config", str(config)]
    assert main([*argv, "--pipeline", pipeline]) == 0
    (request,) = offline_submit.requests
    spec = json.loads(json_format.MessageToJson(request._pb))["pipelineJob"]["pipelineSpec"]
    problems = spec_problems(spec)
    assert not problems, _report(f"submit --env {variant} --pipeline {pipeline}", problems)


@pytest.mark.parametrize("variant", ["packaged", "example", "no-custom-job"])
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_each_steps_limits_read_its_pipeline_parameters_through_the_loops(
    variant, name, compiled_env_specs
):
    """An environment's resources reach every step: placeholder -> task -> loop -> root."""
    from tests.unit.pipelines.test_tasks import STEP_OF_EXECUTOR

    if variant == "packaged":
        path = os.path.join(REPO, "pipeline_specs", f"{name}.yaml")
    else:
        path = compiled_env_specs[f"compile --env {variant}: {name}"]
    spec = load_spec(path)
    executors = spec["deploymentSpec"]["executors"]
    seen = set()
    for dag_name, component in _dags(spec).items():
        for task_name, task in component["dag"]["tasks"].items():
            label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
            resources = (executors.get(label, {}).get("container") or {}).get("resources")
            if not resources:
                continue
            step = STEP_OF_EXECUTOR[label]
            for field, limit in (("resourceCpuLimit", "cpu"), ("resourceMemoryLimit", "memory")):
                ((_, _, channel),) = _PLACEHOLDER.findall(resources[field])
                assert root_parameter(spec, dag_name, task, channel) == f"{step}_{limit}_limit", (
                    f"{path}: {dag_name} / {task_name}: {field}"
                )
            seen.add(task_name)
    expected = {"ingest-data", "transform-data", "evaluate-model", "render-report"}
    if name in ("sweep_pipeline", "halving_pipeline"):
        expected |= {"select-best-model", "register-model", "gate-model", "promote-model"}
    trainings = {"train-model"}
    if name == "halving_pipeline":  # one training per rung stage, the final one included
        trainings = {"train-trial", "train-trial-2", "train-trial-3", "train-trial-4"}
    if variant != "example":  # the custom job's machine decides; its launcher has no limits
        expected |= trainings
    assert seen == expected


# --- the checker itself ---------------------------------------------------------------------


def test_the_checker_finds_each_kind_of_dangling_reference():
    spec = load_spec(os.path.join(REPO, "pipeline_specs", "sweep_pipeline.yaml"))
    assert spec_problems(spec) == []
    loop = spec["root"]["dag"]["tasks"]["for-loop-2"]
    body = spec["components"][loop["componentRef"]["name"]]
    del body["inputDefinitions"]["parameters"]["pipelinechannel--config_yaml"]
    spec["root"]["dag"]["tasks"]["bind-transforms"]["dependentTasks"] = ["nope"]
    spec["root"]["dag"]["tasks"]["bind-transforms"]["inputs"]["parameters"]["transforms"][
        "taskOutputParameter"
    ]["outputParameterKey"] = "missing"
    spec["root"]["dag"]["outputs"]["artifacts"]["report"]["artifactSelectors"][0][
        "producerSubtask"
    ] = "gone"
    loop["parameterIterator"]["items"]["inputParameter"] = "not-an-input"
    spec["root"]["dag"]["tasks"]["plan-sweep"]["componentRef"]["name"] = "comp-nope"
    executor = spec["deploymentSpec"]["executors"]["exec-ingest-data"]["container"]
    executor["resources"] = {"resourceCpuLimit": "{{$.inputs.parameters['pipelinechannel--x']}}"}
    problems = "\n".join(spec_problems(spec))
    for expected in (
        "comp-for-loop-2 / task train-model: inputs.parameters['config_yaml'] reads "
        "componentInputParameter 'pipelinechannel--config_yaml', which comp-for-loop-2 does "
        "not declare",
        "root / task bind-transforms: dependentTasks names 'nope'",
        "root / task bind-transforms: inputs.parameters['transforms'] reads output 'missing' "
        "of for-loop-1",
        "root: dag.outputs.artifacts['report'] reads an output of 'gone'",
        "root / task for-loop-2: parameterIterator.items.inputParameter 'not-an-input'",
        "root / task plan-sweep: componentRef 'comp-nope' is not in components",
        "executor exec-ingest-data: container.resources.resourceCpuLimit names input "
        "parameter 'pipelinechannel--x'",
    ):
        assert expected in problems, problems
