"""Submitting to Vertex AI: the request the aiplatform client would send, captured at its transport."""

import json
import os

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1.services.pipeline_service.transports.grpc import (
    PipelineServiceGrpcTransport,
)
from google.cloud.aiplatform_v1.types import pipeline_job as gca_pipeline_job
from google.protobuf import json_format

from components import COMPONENT_IMAGE
from pipelines import env as envmod
from pipelines import vertex

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
IMAGE = "europe-west4-docker.pkg.dev/my-gcp-project/pipelines/b2b-recs:1.2.3"


def _env(**changes) -> envmod.EnvConfig:
    with open(os.path.join(REPO, "configs", "env", "example.yaml")) as f:
        data = yaml.safe_load(f)
    data.update(
        network="projects/123456789/global/networks/recs-vpc",
        image=IMAGE,
        labels={"team": "recs", "env": "test"},
        **changes,
    )
    return envmod.parse_env(data, "configs/env/test.yaml")


def _spec_with_env_parameters(tmp_path) -> str:
    """The committed training spec, declaring every parameter an env file can set.

    Until the pipelines declare them all (tests/unit/pipelines/test_env.py checks that),
    the request is checked against this copy, so this test checks submit, not the pipeline.
    """
    with open(vertex.spec_path("training")) as f:
        spec = yaml.safe_load(f)
    declared = spec["root"]["inputDefinitions"]["parameters"]
    kinds = {str: "STRING", int: "NUMBER_INTEGER", list: "LIST"}
    for name, value in _env().pipeline_parameters().items():
        declared.setdefault(name, {"parameterType": kinds[type(value)], "isOptional": True})
    path = tmp_path / "training_pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=True))
    return str(path)


@pytest.fixture
def captured(monkeypatch):
    """CreatePipelineJob requests, taken from the gRPC transport instead of being sent."""
    requests = []

    def create_pipeline_job(request, timeout=None, metadata=()):
        requests.append(request)
        job = gca_pipeline_job.PipelineJob(request.pipeline_job)
        job.name = f"{request.parent}/pipelineJobs/{request.pipeline_job_id}"
        return job

    # The transport wraps this callable at construction; replacing the property replaces the
    # one RPC and nothing above it (request assembly, routing headers, the client wrapper).
    monkeypatch.setattr(
        PipelineServiceGrpcTransport,
        "create_pipeline_job",
        property(lambda self: create_pipeline_job),
    )
    # submit() first checks the pipeline root's bucket with google-cloud-storage (best effort,
    # errors only logged); keep that offline and record what it was asked.
    buckets = []
    monkeypatch.setattr(
        "google.cloud.aiplatform.pipeline_jobs.gcs_utils."
        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        lambda **kwargs: buckets.append(kwargs["output_artifacts_gcs_dir"]),
    )
    return requests, buckets


def test_submit_sends_template_parameters_labels_network_and_service_account(
    tmp_path, captured, capsys
):
    requests, buckets = captured
    env = _env()
    request = vertex.build_job_request(
        env,
        "training",
        {"config_yaml": "experiment: x\n", "data_source": "gs://b/data/abc/x.csv.gz"},
        template_path=_spec_with_env_parameters(tmp_path),
        job_id="training-pipeline-20261127",
        credentials=AnonymousCredentials(),
    )
    name = vertex.submit(request)

    assert len(requests) == 1
    body = json.loads(json_format.MessageToJson(requests[0]._pb))
    assert body["parent"] == "projects/my-gcp-project/locations/europe-west4"
    assert body["pipelineJobId"] == "training-pipeline-20261127"
    job = body["pipelineJob"]
    assert job["serviceAccount"] == "pipelines@my-gcp-project.iam.gserviceaccount.com"
    assert job["network"] == "projects/123456789/global/networks/recs-vpc"
    assert job["labels"]["team"] == "recs" and job["labels"]["env"] == "test"
    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == "gs://my-gcp-project-pipelines/root"
    params = runtime["parameterValues"]
    assert params["config_yaml"] == "experiment: x\n"
    assert params["data_source"] == "gs://b/data/abc/x.csv.gz"
    assert params["mlflow_tracking_uri"] == env.mlflow.tracking_uri
    assert params["train_machine_type"] == "n1-standard-8"
    assert params["train_accelerator_type"] == "NVIDIA_TESLA_T4"
    assert params["train_accelerator_count"] == 1
    assert params["train_memory_limit"] == "32G"
    assert params["beam_pipeline_args"][-1] == f"--sdk_container_image={IMAGE}"
    spec = job["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == "training-pipeline"
    # Caching unset: no task's cachingOptions is overridden; train/evaluate/report stay uncached.
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["train-model"]["cachingOptions"] == {}
    assert tasks["ingest-data"]["cachingOptions"] == {"enableCache": True}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}, "the environment's image replaces the compiled default"
    assert COMPONENT_IMAGE not in json.dumps(spec)
    assert buckets == ["gs://my-gcp-project-pipelines/root"]

    assert name == (
        "projects/my-gcp-project/locations/europe-west4/pipelineJobs/training-pipeline-20261127"
    )
    printed = capsys.readouterr().out
    assert (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
        "training-pipeline-20261127?project=my-gcp-project" in printed
    )


def test_enable_caching_flag_overrides_every_task(tmp_path, captured):
    requests, _ = captured
    request = vertex.build_job_request(
        _env(),
        "training",
        {"config_yaml": "x: 1\n"},
        template_path=_spec_with_env_parameters(tmp_path),
        enable_caching=False,
        credentials=AnonymousCredentials(),
    )
    assert request.job.job_id.startswith("training-pipeline-")
    vertex.submit(request)
    tasks = requests[0].pipeline_job.pipeline_spec["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())


def test_packaged_template_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.path.isfile(vertex.spec_path("training"))
    assert vertex.spec_path("training_pipeline") == vertex.spec_path("training")


def test_undeclared_parameters_and_missing_specs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"declares no parameter\(s\) \['nope'\]"):
        vertex.build_job_request(
            _env(),
            "training",
            {"nope": 1},
            template_path=_spec_with_env_parameters(tmp_path),
            credentials=AnonymousCredentials(),
        )
    with pytest.raises(FileNotFoundError, match="run `make compile`"):
        vertex.build_job_request(_env(), "nonexistent", {}, credentials=AnonymousCredentials())


class _Client:
    """The calls stage_data_source makes of google-cloud-storage, kept in a dict."""

    def __init__(self):
        self.objects, self.uploads = {}, 0

    def bucket(self, name):
        assert name == "bkt"
        return self

    def blob(self, name):
        client = self

        class Blob:
            def exists(self):
                return name in client.objects

            def upload_from_filename(self, path):
                client.uploads += 1
                with open(path, "rb") as f:
                    client.objects[name] = f.read()

        return Blob()


def test_stage_data_source_is_content_addressed(tmp_path):
    source = tmp_path / "retail.csv.gz"
    source.write_bytes(b"a,b\n1,2\n")
    client = _Client()
    uri = vertex.stage_data_source(str(source), "gs://bkt/root", client=client)
    assert uri.startswith("gs://bkt/root/data/") and uri.endswith("/retail.csv.gz")
    assert client.objects[uri[len("gs://bkt/") :]] == b"a,b\n1,2\n"
    # A rerun with the same bytes reuses the object; changed bytes get a new name.
    assert vertex.stage_data_source(str(source), "gs://bkt/root", client=client) == uri
    assert client.uploads == 1
    source.write_bytes(b"a,b\n3,4\n")
    assert vertex.stage_data_source(str(source), "gs://bkt/root", client=client) != uri
    assert client.uploads == 2


def test_stage_data_source_folders_remote_uris_and_errors(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"1")
    (folder / "b.parquet").write_bytes(b"2")
    client = _Client()
    uri = vertex.stage_data_source(str(folder), "gs://bkt", client=client)
    assert uri.startswith("gs://bkt/data/") and uri.endswith("/parts")
    assert sorted(client.objects) == [
        f"{uri[len('gs://bkt/') :]}/{n}" for n in ("a.parquet", "b.parquet")
    ]
    assert vertex.stage_data_source("gs://x/y.csv", "gs://bkt", client=client) == "gs://x/y.csv"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vertex.stage_data_source(str(tmp_path / "missing.csv"), "gs://bkt", client=client)
    with pytest.raises(ValueError, match="expected a gs:// folder"):
        vertex.stage_data_source(str(folder), "/tmp/root", client=client)
