"""Environment files: every file in configs/env/ is valid and fits the compiled pipelines."""

import glob
import os

import pytest
import yaml

from pipelines import env as envmod

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
ENV_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "env", "*.yaml")))
SPECS = sorted(glob.glob(os.path.join(REPO, "pipeline_specs", "*.yaml")))


def _example() -> dict:
    with open(os.path.join(REPO, "configs", "env", "example.yaml")) as f:
        return yaml.safe_load(f)


def test_there_is_an_example_and_a_spec_to_check_against():
    assert "example.yaml" in [os.path.basename(p) for p in ENV_FILES]
    assert SPECS, "no compiled pipeline specs: run `make compile`"


@pytest.mark.parametrize("path", ENV_FILES, ids=os.path.basename)
def test_every_env_file_is_valid(path):
    env = envmod.load_env(path)
    assert env.pipeline_root.startswith("gs://")
    assert env.mlflow.tracking_uri.startswith(("https://", "http://"))


@pytest.fixture(scope="module")
def compiled_variants(tmp_path_factory) -> list[str]:
    """The packaged specs, and each env file's own (its training machine compiled in)."""
    from pipelines.__main__ import compile_all

    specs = list(SPECS)
    for path in ENV_FILES:
        machine = envmod.load_env(path).compile_options()["train_machine"]
        if machine is not None:
            out = tmp_path_factory.mktemp(os.path.basename(path).replace(".", "_"))
            specs += compile_all(str(out), train_machine=machine)
    return specs


@pytest.mark.parametrize("path", ENV_FILES, ids=os.path.basename)
def test_env_parameters_are_parameters_of_every_compiled_pipeline(path, compiled_variants):
    params = envmod.load_env(path).pipeline_parameters()
    assert set(params) <= set(envmod.parameter_names())
    assert len(compiled_variants) > len(SPECS), "no variant with a training machine checked"
    kinds = {"STRING": str, "NUMBER_INTEGER": int, "LIST": list, "BOOLEAN": bool}
    for spec_path in compiled_variants:
        with open(spec_path) as f:
            accepted = yaml.safe_load(f)["root"]["inputDefinitions"]["parameters"]
        missing = sorted(set(envmod.parameter_names()) - set(accepted))
        assert not missing, (
            f"{spec_path} has no parameter(s) {missing} that an env file can set "
            f"(pipelines/env.py parameter_names)"
        )
        for name, value in params.items():
            expected = kinds.get(accepted[name]["parameterType"])
            assert expected is None or isinstance(value, expected), (spec_path, name, value)


def test_example_parses_into_typed_fields():
    env = envmod.load_env(os.path.join(REPO, "configs", "env", "example.yaml"))
    assert env.name == "example"
    assert env.resources["train"] == envmod.StepResources(cpu_limit="8", memory_limit="32G")
    assert env.train == envmod.TrainMachine(
        "n1-standard-8",
        "NVIDIA_TESLA_T4",
        1,
        "86400s",
        labels=(("team", "recs"), ("env", "example")),
    )
    params = env.pipeline_parameters()
    assert params["ingest_memory_limit"] == "16G" and params["train_cpu_limit"] == "8"
    # The training machine is compiled into the spec, not sent as a parameter.
    assert env.compile_options() == {"train_machine": env.train, "model_upload": env.model_upload}
    assert env.model_upload == envmod.ModelUpload(
        "b2b-recs-two-tower",
        "europe-west4",
        env.image,
        "projects/my-gcp-project/locations/europe-west4/models/1234567890",
        "projects/my-gcp-project/locations/europe-west4/endpoints/9876543210",
        "n1-standard-2",
    )
    assert not [p for p in params if p.startswith(("train_machine", "train_accel", "train_time"))]
    # Dataflow workers get the dataflow-worker image pushed beside the component image.
    repo, tag = env.image.rsplit(":", 1)
    assert env.dataflow_worker_image == f"{repo}-dataflow-worker:{tag}"
    assert params["beam_pipeline_args"][-1] == f"--sdk_container_image={env.dataflow_worker_image}"
    # What the file leaves empty is left to the pipeline's defaults.
    data = _example()
    data["train"] = {}
    del data["model_upload"]
    data["resources"] = {"train": {"cpu_limit": 2}}
    env = envmod.parse_env(data, "x.yaml")
    assert env.compile_options() == {"train_machine": None, "model_upload": None}
    params = env.pipeline_parameters()
    assert params["train_cpu_limit"] == "2" and "train_memory_limit" not in params
    assert "ingest_cpu_limit" not in params


def _error(data: dict) -> str:
    with pytest.raises(envmod.EnvError) as err:
        envmod.parse_env(data, "configs/env/x.yaml")
    return str(err.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            {"resources": {"train": {"memory_limit": "16 GB"}}},
            "configs/env/x.yaml: resources.train.memory_limit: expected a quantity in K, M or G "
            "like 16G or 512M (Ki, Mi, Gi, T are converted), got '16 GB'",
        ),
        (
            {"resources": {"train": {"memory_limit": "16"}}},
            "configs/env/x.yaml: resources.train.memory_limit: expected a unit, G, M, K (Vertex "
            "AI's units, like 16G or 512M), got '16'",
        ),
        (
            {"resources": {"train": {"memory_limit": "0G"}}},
            "configs/env/x.yaml: resources.train.memory_limit: expected more than 0, got '0G'",
        ),
        (
            {"resources": {"train": {"cpu_limit": "0"}}},
            "configs/env/x.yaml: resources.train.cpu_limit: expected more than 0, got '0'",
        ),
        (
            {"resources": {"train": {"cpu_limit": "four"}}},
            "configs/env/x.yaml: resources.train.cpu_limit: expected a CPU count",
        ),
        ({"resources": {"trian": {}}}, "configs/env/x.yaml: resources.trian: unknown field"),
        (
            {"pipeline_root": "/tmp/root"},
            "configs/env/x.yaml: pipeline_root: expected a gs:// folder",
        ),
        ({"project": None}, "configs/env/x.yaml: project: is required"),
        ({"region": "Europe West"}, "configs/env/x.yaml: region: expected a region"),
        ({"labels": {"Team": "x"}}, "configs/env/x.yaml: labels.Team: expected a label key"),
        ({"labels": {"team": "A B"}}, "configs/env/x.yaml: labels.team: expected a label value"),
        ({"network": "my-vpc"}, "configs/env/x.yaml: network: expected projects/"),
        ({"service_account": "me"}, "configs/env/x.yaml: service_account: expected a service"),
        ({"image": "b2b-recs"}, "configs/env/x.yaml: image: expected an image reference"),
        ({"beam_args": "--runner=x"}, "configs/env/x.yaml: beam_args: expected a list"),
        (
            {"train": {"accelerator_type": "NVIDIA_TESLA_T4", "machine_type": ""}},
            "configs/env/x.yaml: train.machine_type: is required when accelerator_type is set",
        ),
        (
            {"train": {"machine_type": "n1-standard-8", "accelerator_type": "T4"}},
            "configs/env/x.yaml: train.accelerator_type: expected a Vertex accelerator",
        ),
        (
            {"train": {"accelerator_type": "", "accelerator_count": 2}},
            "configs/env/x.yaml: train.accelerator_type: is required when accelerator_count is 2",
        ),
        ({"train": {"timeout": "1h"}}, "configs/env/x.yaml: train.timeout: expected a duration"),
        ({"retries": 3}, "configs/env/x.yaml: retries: unknown field"),
    ],
)
def test_errors_name_file_field_and_expectation(edit, message):
    data = _example()
    for key, value in edit.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "labels":
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    assert _error(data).startswith(message)


@pytest.mark.parametrize(
    "uri",
    ["sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns", "/home/me/mlruns", "databricks"],
)
def test_local_tracking_uris_are_refused(uri):
    data = _example()
    data["mlflow"] = {"tracking_uri": uri}
    message = _error(data)
    assert message.startswith("configs/env/x.yaml: mlflow.tracking_uri: expected the MLflow")
    assert "no Vertex worker can read" in message


def test_missing_mlflow_and_unreadable_file(tmp_path):
    data = _example()
    del data["mlflow"]
    assert _error(data).startswith("configs/env/x.yaml: mlflow.tracking_uri: is required")
    with pytest.raises(envmod.EnvError, match=r"nope.yaml: \(file\): cannot read"):
        envmod.load_env(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: [unclosed\n")
    with pytest.raises(envmod.EnvError, match=r"bad.yaml: \(file\): not valid YAML"):
        envmod.load_env(str(bad))


def test_an_explicit_worker_image_and_directrunner_are_left_alone():
    data = _example()
    data["beam_args"] = ["--runner=DataflowRunner", "--sdk_container_image=x/y:1"]
    args = envmod.parse_env(data, "x.yaml").pipeline_parameters()["beam_pipeline_args"]
    labels = [f"--labels={k}={v}" for k, v in data["labels"].items()]
    assert args == ["--runner=DataflowRunner", "--sdk_container_image=x/y:1", *labels]
    data["beam_args"] = []
    assert envmod.parse_env(data, "x.yaml").pipeline_parameters()["beam_pipeline_args"] == []


def test_env_path_resolves_names():
    assert envmod.env_path("dev") == os.path.join("configs", "env", "dev.yaml")
    assert envmod.env_path("elsewhere/prod.yaml") == "elsewhere/prod.yaml"


@pytest.mark.parametrize(
    "account",
    [
        "pipelines@my-gcp-project.iam.gserviceaccount.com",
        "123456789012-compute@developer.gserviceaccount.com",
    ],
)
def test_service_accounts_including_the_compute_default(account):
    data = _example()
    data["service_account"] = account
    assert envmod.parse_env(data, "x.yaml").service_account == account


def test_a_duplicate_key_in_an_env_file_is_an_error_naming_it(tmp_path):
    from pipelines.env import EnvError, load_env

    path = tmp_path / "dup.yaml"
    path.write_text("project: a-project-1\nproject: b-project-2\n", encoding="utf-8")
    with pytest.raises(EnvError, match="duplicate key 'project'"):
        load_env(str(path))


@pytest.mark.parametrize(
    "memory, sent",
    [
        ("16G", "16G"),
        ("512M", "512M"),
        ("2048K", "2048K"),
        ("0.5G", "500M"),
        ("1.5G", "1500M"),
        ("1T", "1000G"),
        # Binary units: exact where a whole K, M or G says it, else rounded up to whole M (K
        # below 1M), so the limit never shrinks.
        ("16Gi", "17180M"),
        ("512Mi", "537M"),
        ("256Ki", "263K"),
    ],
)
def test_memory_limits_reach_vertex_in_its_units(memory, sent):
    data = _example()
    data["resources"] = {"train": {"memory_limit": memory}}
    env = envmod.parse_env(data, "x.yaml")
    assert env.resources["train"].memory_limit == sent
    assert env.pipeline_parameters()["train_memory_limit"] == sent
    assert sent[-1] in envmod.VERTEX_MEMORY_UNITS and sent[:-1].isdigit()
    size = envmod.memory_quantity(memory)
    assert envmod._BYTES[size[-1]] * int(size[:-1]) >= _bytes(memory)


def _bytes(quantity: str) -> float:
    unit = quantity.lstrip("0123456789.")
    return float(quantity[: -len(unit)]) * envmod._BYTES[unit]


@pytest.mark.parametrize(
    "cpu, sent",
    [(4, "4"), ("8", "8"), ("500m", "500m"), (0.5, "500m"), (1.0, "1"), ("1.25", "1250m")],
)
def test_cpu_limits_reach_vertex_as_whole_cpus_or_millicores(cpu, sent):
    data = _example()
    data["resources"] = {"ingest": {"cpu_limit": cpu}}
    params = envmod.parse_env(data, "x.yaml").pipeline_parameters()
    assert params["ingest_cpu_limit"] == sent


def test_an_env_without_image_is_refused_naming_the_field():
    data = _example()
    del data["image"]
    with pytest.raises(envmod.EnvError) as info:
        envmod.parse_env(data, "configs/env/test.yaml")
    assert info.value.field == "image"


def test_a_digest_image_with_dataflow_needs_the_workers_digest_too():
    digest = "europe-west4-docker.pkg.dev/p/pipelines/b2b-recs@sha256:" + "a" * 64
    with pytest.raises(envmod.EnvError) as info:
        envmod.parse_env({**_example(), "image": digest}, "configs/env/test.yaml")
    assert info.value.field == "dataflow_worker_image"
    worker = "europe-west4-docker.pkg.dev/p/pipelines/b2b-recs-dataflow-worker@sha256:" + "b" * 64
    env = envmod.parse_env(
        {**_example(), "image": digest, "dataflow_worker_image": worker}, "configs/env/test.yaml"
    )
    assert env.pipeline_parameters()["beam_pipeline_args"][-1] == f"--sdk_container_image={worker}"


def test_a_scheduling_strategy_is_checked_and_needs_a_custom_job():
    data = _example()
    data["train"] = {**data["train"], "scheduling_strategy": "SPOT"}
    assert envmod.parse_env(data, "x.yaml").train.scheduling_strategy == "SPOT"
    data["train"]["scheduling_strategy"] = "CHEAP"
    with pytest.raises(envmod.EnvError, match="train.scheduling_strategy: expected one of"):
        envmod.parse_env(data, "x.yaml")
    data["train"] = {"scheduling_strategy": "SPOT"}
    with pytest.raises(envmod.EnvError, match="train.machine_type"):
        envmod.parse_env(data, "x.yaml")


# --- prices and labels (issue 26, cost beside quality) --------------------------------------


def test_a_prices_section_overrides_the_packaged_table_and_reaches_the_pipelines():
    from trainer import cost

    data = _example()
    data["prices"] = {
        "machines": {"n1-standard-8": 0.3},
        "accelerators": {"NVIDIA_TESLA_T4": 0.25},
        "vcpu_hour": 0.05,
        "spot_factor": 0.3,
    }
    env = envmod.parse_env(data, "x.yaml")
    params = env.pipeline_parameters()
    assert params["prices"] == data["prices"]
    table = cost.load_prices(params["prices"])
    assert table.machines["n1-standard-8"] == 0.3 and table.accelerators["NVIDIA_TESLA_T4"] == 0.25
    assert table.machines["n1-standard-4"] == cost.load_prices().machines["n1-standard-4"]
    assert "machines.n1-standard-8" in table.describe()
    # Without the section nothing is sent: the packaged prices apply.
    del data["prices"]
    assert "prices" not in envmod.parse_env(data, "x.yaml").pipeline_parameters()


@pytest.mark.parametrize(
    "prices, field, problem",
    [
        ({"machines": {"n1-standard-8": "cheap"}}, "prices.machines.n1-standard-8", "a price"),
        ({"machines": {"n1-standard-8": -1}}, "prices.machines.n1-standard-8", ">= 0"),
        ({"machines": {"N1 standard": 1.0}}, "prices.machines.N1 standard", "machine type"),
        ({"accelerators": {"t4": 0.4}}, "prices.accelerators.t4", "NVIDIA_TESLA_T4"),
        ({"accelerators": {"NVIDIA_L4": True}}, "prices.accelerators.NVIDIA_L4", "a price"),
        ({"spot_factor": 1.5}, "prices.spot_factor", "(0, 1]"),
        ({"spot_factor": 0}, "prices.spot_factor", "(0, 1]"),
        ({"vcpu_hour": float("nan")}, "prices.vcpu_hour", "a price"),
        ({"gpus": {}}, "prices.gpus", "unknown field"),
        ({"machines": [1, 2]}, "prices.machines", "a mapping"),
        ([1], "prices", "a mapping"),
    ],
)
def test_a_bad_price_names_the_file_and_the_field(prices, field, problem):
    data = _example()
    data["prices"] = prices
    with pytest.raises(envmod.EnvError) as err:
        envmod.parse_env(data, "configs/env/dev.yaml")
    assert err.value.source == "configs/env/dev.yaml" and err.value.field == field
    assert problem in err.value.problem
    assert str(err.value).startswith(f"configs/env/dev.yaml: {field}: ")


def test_the_labels_reach_dataflow_and_the_custom_job_but_not_a_direct_runner():
    data = _example()
    data["labels"] = {"team": "recs", "cost-center": "ml"}
    data["beam_args"] = [*data["beam_args"], "--labels=team=search"]
    env = envmod.parse_env(data, "x.yaml")
    args = env.pipeline_parameters()["beam_pipeline_args"]
    # A label the Beam args set keeps its value; the others are added once.
    assert [a for a in args if a.startswith("--labels=")] == [
        "--labels=team=search",
        "--labels=cost-center=ml",
    ]
    assert dict(env.compile_options()["train_machine"].labels) == data["labels"]
    data["beam_args"] = ["--runner=DirectRunner"]
    assert envmod.parse_env(data, "x.yaml").pipeline_parameters()["beam_pipeline_args"] == [
        "--runner=DirectRunner"
    ]
