"""The sweep's Vertex Model Registry upload: only for an env that asks, only after a promotion.

Checked in the compiled spec the way Vertex reads it: the upload runs under the promote
step's ``moved`` condition nested in the gate's PROMOTE branch, the SavedModel URI is the
promote step's output, the container is the component image's predictor on the routes the
predictor serves, and the parent model and endpoint are the env's.
"""

from __future__ import annotations

import os

import pytest
import yaml

from pipelines import env as envmod
from pipelines.__main__ import main
from tests.unit.pipelines.test_spec_references import EXAMPLE_ENV, load_spec, spec_problems
from trainer import contract, registry


@pytest.fixture(scope="module")
def example_spec(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("upload")
    assert main(["compile", "--env", EXAMPLE_ENV, "--out", str(out)]) == 0
    return load_spec(str(out / "sweep_pipeline.yaml"))


def _all_tasks(spec: dict) -> dict[str, tuple[str, dict]]:
    """Every task of every DAG: name -> (DAG component, task)."""
    found = {"root": spec["root"]}
    found.update({k: v for k, v in spec["components"].items() if "dag" in v})
    return {
        name: (dag, task)
        for dag, component in found.items()
        for name, task in component["dag"]["tasks"].items()
    }


def test_the_example_env_uploads_and_deploys_a_promoted_champion(example_spec):
    assert spec_problems(example_spec) == []
    tasks = _all_tasks(example_spec)
    upload_dag, upload = tasks["model-upload"]
    assert upload["componentRef"]["name"] == "comp-model-upload"
    # Nested: the gate's PROMOTE branch holds the promote step and the moved branch.
    promote_dag, _ = tasks["promote-model"]
    moved_dag, moved = next(
        (d, t) for n, (d, t) in tasks.items() if t.get("componentRef", {}).get("name") == upload_dag
    )
    assert moved_dag == promote_dag
    assert "moved" in moved["triggerPolicy"]["condition"]
    params = upload["inputs"]["parameters"]
    assert params["location"]["runtimeValue"]["constant"] == "europe-west4"
    assert params["version_aliases"]["runtimeValue"]["constant"] == ["champion"]
    assert params["display_name"]["runtimeValue"]["constant"] == "b2b-recs-two-tower"
    # The SavedModel: an importer whose URI is the promote step's artifact_uri output.
    importers = {
        name: component
        for name, component in example_spec["deploymentSpec"]["executors"].items()
        if "importer" in component
    }
    saved = next(
        i["importer"]
        for i in importers.values()
        if "containerSpec" in i["importer"].get("metadata", {})
    )
    spec = saved["metadata"]["containerSpec"]
    env = envmod.load_env(EXAMPLE_ENV)
    assert spec == registry.predictor_container(env.image)
    assert spec["predictRoute"] == contract.DEFAULT_PREDICT_ROUTE
    assert spec["healthRoute"] == contract.DEFAULT_HEALTH_ROUTE
    assert spec["ports"] == [{"containerPort": str(contract.DEFAULT_PREDICTOR_PORT)}]
    resources = {i["importer"].get("metadata", {}).get("resourceName") for i in importers.values()}
    assert env.model_upload.parent_model in resources and env.model_upload.endpoint in resources
    _, deploy = tasks["model-deploy"]
    deploy_params = deploy["inputs"]["parameters"]
    assert (
        deploy_params["dedicated_resources_machine_type"]["runtimeValue"]["constant"]
        == "n1-standard-2"
    )
    assert deploy_params["traffic_split"]["runtimeValue"]["constant"] == {"0": 100}


def test_the_packaged_spec_and_an_env_without_the_section_upload_nothing(tmp_path):
    with open(EXAMPLE_ENV, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    del data["model_upload"]
    path = tmp_path / "no-upload.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["compile", "--env", str(path), "--out", str(tmp_path / "out")]) == 0
    for spec_path in (
        str(tmp_path / "out" / "sweep_pipeline.yaml"),
        os.path.join("pipeline_specs", "sweep_pipeline.yaml"),
    ):
        tasks = _all_tasks(load_spec(spec_path))
        assert "promote-model" in tasks and "model-upload" not in tasks


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"parent_model": "projects/p/locations/europe-west4/models/1"},
            "model_upload.display_name: is required",
        ),
        (
            {"display_name": "m", "parent_model": "models/1"},
            "model_upload.parent_model: expected a model resource name",
        ),
        (
            {"display_name": "m", "endpoint": "projects/p/locations/us-central1/endpoints/2"},
            "model_upload.endpoint: expected a resource in the environment's region europe-west4",
        ),
        (
            {"display_name": "m", "machine_type": "n1-standard-4"},
            "model_upload.machine_type: is the endpoint's machine",
        ),
        ({"display_name": "m", "deploy": True}, "model_upload.deploy: unknown field"),
    ],
)
def test_a_bad_model_upload_section_names_its_field(section, problem):
    with open(EXAMPLE_ENV, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    data["model_upload"] = section
    with pytest.raises(envmod.EnvError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        envmod.parse_env(data, "x.yaml")
