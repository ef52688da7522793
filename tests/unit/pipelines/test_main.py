"""`python -m pipelines submit` and `compile`: end to end, up to the request Vertex AI would get.

Nothing leaves the machine: the aiplatform client's gRPC calls are answered by the `captured`
fixture (fakes.py), google-cloud-storage is faked at its Client, and application default
credentials are anonymous.
"""

import json
import os
import re

import google.auth
import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.types import pipeline_state
from google.protobuf import json_format

from components import COMPONENT_IMAGE, with_image
from pipelines.__main__ import main
from tests.conftest import TINY_CONFIG, write_tiny_retail_csv
from tests.unit.pipelines.fakes import (
    IMAGE,
    NETWORK,
    WORKER_IMAGE,
    FakeStorageClient,
    example_env_data,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
ROOT = "gs://my-gcp-project-pipelines/root"


@pytest.fixture
def offline(monkeypatch, captured):
    """Anonymous default credentials and a fake storage client; what was captured."""
    monkeypatch.setattr(
        google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "my-gcp-project")
    )
    FakeStorageClient.instances = []
    monkeypatch.setattr("google.cloud.storage.Client", FakeStorageClient)
    return captured


@pytest.fixture
def files(tmp_path):
    """An experiment YAML with a relative local source, and env files (CPU and GPU training)."""
    write_tiny_retail_csv(tmp_path / "tiny.csv.gz")
    config = tmp_path / "experiment.yaml"
    config.write_text(TINY_CONFIG.format(source="tiny.csv.gz"), encoding="utf-8")
    paths = {"config": str(config), "data": str(tmp_path / "tiny.csv.gz")}
    for name, train in (("cpu", {}), ("gpu", None)):
        data = example_env_data()
        if train is not None:  # CPU training and no Vertex upload: the packaged spec's steps
            data["train"] = train
            data.pop("model_upload")
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        paths[name] = str(path)
    return paths


def _body(captured) -> dict:
    assert len(captured.requests) == 1
    return json.loads(json_format.MessageToJson(captured.requests[0]._pb))


def _as_sent(spec: dict) -> dict:
    """A spec as the request carries it (a protobuf Struct: every number a float)."""

    def floats(value):
        if isinstance(value, dict):
            return {k: floats(v) for k, v in value.items()}
        if isinstance(value, list):
            return [floats(v) for v in value]
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    return floats(spec)


def test_submit_sweep_sends_the_packaged_spec_staged_data_and_the_env(offline, files, capsys):
    assert main(["submit", "--env", files["cpu"], "--config", files["config"]]) == 0

    body = _body(offline)
    assert body["parent"] == "projects/my-gcp-project/locations/europe-west4"
    assert re.fullmatch(r"sweep-pipeline-\d{14}", body["pipelineJobId"])
    job = body["pipelineJob"]
    assert job["displayName"] == body["pipelineJobId"]
    assert job["serviceAccount"] == "pipelines@my-gcp-project.iam.gserviceaccount.com"
    assert job["network"] == NETWORK
    assert job["labels"]["team"] == "recs" and job["labels"]["env"] == "test"
    # The template: the packaged sweep spec, every step in the environment's image, and no
    # caching override (train, evaluate, report and select stay uncached).
    with open(os.path.join(REPO, "pipeline_specs", "sweep_pipeline.yaml")) as f:
        expected = yaml.safe_load(with_image(f.read(), IMAGE))
    assert job["pipelineSpec"] == _as_sent(expected)
    assert COMPONENT_IMAGE not in json.dumps(job)

    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == ROOT
    params = runtime["parameterValues"]
    (client,) = FakeStorageClient.instances
    (staged,) = client.objects
    assert client.buckets == ["my-gcp-project-pipelines"]
    assert re.fullmatch(r"root/data/[0-9a-f]{16}/tiny\.csv\.gz", staged)
    with open(files["data"], "rb") as f:
        assert client.objects[staged] == f.read()
    uri = f"gs://my-gcp-project-pipelines/{staged}"
    assert params["data_source"] == uri
    sent_config = yaml.safe_load(params["config_yaml"])
    assert sent_config["dataset"]["source"] == uri
    assert sent_config["experiment"] == "tiny-experiment"
    assert os.path.dirname(files["config"]) not in json.dumps(body), "a local path leaked"
    assert params["mlflow_tracking_uri"] == "https://mlflow-server-abcdefghij-ez.a.run.app"
    assert params["mlflow_ui_url"] == "http://localhost:8080"
    assert params["rank_metric"] == "best_val_recall_at_100"  # chosen on validation
    assert params["beam_pipeline_args"][0] == "--runner=DataflowRunner"
    assert params["beam_pipeline_args"][-1] == f"--sdk_container_image={WORKER_IMAGE}"
    assert params["ingest_cpu_limit"] == "4" and params["train_memory_limit"] == "32G"
    assert params["report_cpu_limit"] == "2" and params["report_memory_limit"] == "8G"
    assert params["prices"]["machines"] == {"n1-standard-8": 0.4807}
    assert sorted(params) == sorted(
        [
            "config_yaml",
            "data_source",
            "mlflow_tracking_uri",
            "mlflow_ui_url",
            "beam_pipeline_args",
            "rank_metric",
            "prices",  # the example's price overrides
            *[
                f"{s}_{r}"
                for s in ("ingest", "transform", "train", "evaluate", "report")
                for r in ("cpu_limit", "memory_limit")
            ],
        ]
    )
    assert offline.buckets == [ROOT]

    out = capsys.readouterr().out
    assert f"staged:    {files['data']} -> {uri}" in out
    assert (
        "console:   https://console.cloud.google.com/vertex-ai/locations/europe-west4/"
        f"pipelines/runs/{body['pipelineJobId']}?project=my-gcp-project"
    ) in out


def test_submit_with_a_bigquery_source_sends_it_as_is_and_uploads_nothing(offline, files):
    config = files["config"].replace("experiment.yaml", "bq.yaml")
    text = TINY_CONFIG.format(source="bq://my-gcp-project.shop.orders")
    with open(config, "w", encoding="utf-8") as f:
        f.write(text)
    assert main(["submit", "--env", files["cpu"], "--config", config]) == 0
    params = _body(offline)["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert params.get("data_source", "") == ""  # the config names the table itself
    assert (
        yaml.safe_load(params["config_yaml"])["dataset"]["source"]
        == "bq://my-gcp-project.shop.orders"
    )
    assert not FakeStorageClient.instances or not FakeStorageClient.instances[0].objects


def test_submit_with_a_gpu_env_sends_the_custom_job_variant(offline, files):
    argv = ["submit", "--env", files["gpu"], "--config", files["config"]]
    assert main([*argv, "--pipeline", "training", "--feature-config", "ids"]) == 0
    spec = _body(offline)["pipelineJob"]["pipelineSpec"]
    params = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    (pool,) = params["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1.0,
    }
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert spec["pipelineInfo"]["name"] == "training-pipeline"
    values = _body(offline)["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert values["feature_config_id"] == "ids" and values["model_config_id"] == ""


def test_submit_parallelism_sends_a_sweep_compiled_with_that_limit(offline, files):
    argv = ["submit", "--env", files["cpu"], "--config", files["config"], "--parallelism", "6"]
    assert main(argv) == 0
    spec = _body(offline)["pipelineJob"]["pipelineSpec"]
    limits = [
        task["iteratorPolicy"]["parallelismLimit"]
        for task in spec["root"]["dag"]["tasks"].values()
        if "iteratorPolicy" in task
    ]
    assert limits == [6]


def test_wait_follows_the_job_and_a_failed_job_exits_1(offline, files, capsys):
    argv = ["submit", "--env", files["cpu"], "--config", files["config"], "--wait"]
    assert main(argv) == 0
    assert "finished:  PIPELINE_STATE_SUCCEEDED" in capsys.readouterr().out
    offline.requests.clear()
    offline.final_state = pipeline_state.PipelineState.PIPELINE_STATE_FAILED
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: projects/my-gcp-project/locations/europe-west4/pipelineJobs/")
    assert "some tasks failed" in err and "\n" not in err


@pytest.mark.parametrize(
    "flag, expected", [("--enable-caching", True), ("--disable-caching", False)]
)
def test_caching_flags_override_every_step(offline, files, flag, expected):
    assert main(["submit", "--env", files["cpu"], "--config", files["config"], flag]) == 0
    tasks = _body(offline)["pipelineJob"]["pipelineSpec"]["root"]["dag"]["tasks"]
    assert {t["cachingOptions"].get("enableCache", False) for t in tasks.values()} == {expected}


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def test_user_errors_exit_2_in_one_line_before_anything_is_sent(offline, files, tmp_path, capsys):
    base = ["submit", "--config", files["config"]]
    err = _refused([*base, "--env", files["cpu"], "--no-upload-data"], capsys)
    assert "experiment.yaml: dataset.source: " in err
    assert "which no Vertex worker can read" in err and "without --no-upload-data" in err

    data = example_env_data()
    data["mlflow"]["tracking_uri"] = "sqlite:///mlflow.db"
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump(data))
    assert "mlflow.tracking_uri: expected the MLflow server's https:// URL" in _refused(
        [*base, "--env", str(local)], capsys
    )
    data = example_env_data(pipeline_root="/tmp/root")
    local.write_text(yaml.safe_dump(data))
    assert "pipeline_root: expected a gs:// folder" in _refused(
        [*base, "--env", str(local)], capsys
    )
    assert "configs/env/nope.yaml: (file): cannot read" in _refused(
        [*base, "--env", "nope"], capsys
    )
    assert "feature_configs" in _refused(
        [*base, "--env", files["cpu"], "--pipeline", "training", "--feature-config", "nope"],
        capsys,
    )
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(TINY_CONFIG.format(source="missing.csv"))
    assert "dataset.source: file not found" in _refused(
        ["submit", "--config", str(bad_config), "--env", files["cpu"]], capsys
    )
    assert offline.requests == [] and all(not c.objects for c in FakeStorageClient.instances)


def test_missing_credentials_are_a_one_line_error(monkeypatch, captured, files, capsys):
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args, **kwargs):
        raise DefaultCredentialsError("Your default credentials were not found.\nSee ...")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    monkeypatch.setattr("google.cloud.storage.Client", no_credentials)
    err = _refused(["submit", "--env", files["cpu"], "--config", files["config"]], capsys)
    assert "gcloud auth application-default login" in err


def test_compile_env_writes_what_the_env_runs_and_keeps_pipeline_specs_default(tmp_path, capsys):
    env_file = os.path.join(REPO, "configs", "env", "example.yaml")
    assert main(["compile", "--env", env_file, "--out", str(tmp_path)]) == 0
    spec = yaml.safe_load((tmp_path / "sweep_pipeline.yaml").read_text())
    params = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    (pool,) = params["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_T4"
    example_image = "europe-west4-docker.pkg.dev/my-gcp-project/pipelines/b2b-recs:0.1.0-1a2b3c4"
    assert pool["container_spec"]["image_uri"] == example_image
    capsys.readouterr()
    assert "holds the packaged specs only" in _refused(
        ["compile", "--image", IMAGE, "--out", os.path.join(REPO, "pipeline_specs")], capsys
    )


def test_compile_image_sets_every_step(tmp_path):
    assert main(["compile", "--image", IMAGE, "--out", str(tmp_path)]) == 0
    for name in ("sweep_pipeline", "training_pipeline"):
        text = (tmp_path / f"{name}.yaml").read_text()
        spec = yaml.safe_load(text)
        images = {
            e["container"]["image"]
            for e in spec["deploymentSpec"]["executors"].values()
            if "container" in e
        }
        assert images == {IMAGE} and COMPONENT_IMAGE not in text


def test_run_refuses_timestamps_that_do_not_parse_before_starting_a_pipeline(tmp_path, capsys):
    import gzip

    write_tiny_retail_csv(tmp_path / "tiny.csv.gz")
    with gzip.open(tmp_path / "tiny.csv.gz", "rt", encoding="utf-8") as f:
        text = re.sub(r"2011-(\d\d)-(\d\d) ", r"\2/\1/2011 ", f.read())  # day-first dates
    (tmp_path / "dmy.csv").write_text(text, encoding="utf-8")
    config = tmp_path / "experiment.yaml"
    config.write_text(TINY_CONFIG.format(source=tmp_path / "dmy.csv"), encoding="utf-8")
    root = tmp_path / "local"
    argv = ["run", "--config", str(config), "--local-root", str(root)]
    err = _refused([*argv, "--tracking-uri", f"sqlite:///{root}/mlflow.db"], capsys)
    assert "dataset.timestamp_format: " in err and "'%Y-%m-%d %H:%M:%S'" in err
    assert not root.exists()  # nothing started
