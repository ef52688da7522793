"""Submitting to Vertex AI: the request the aiplatform client would send, captured at its transport."""

import json
import os

import pytest
from google.auth.credentials import AnonymousCredentials
from google.protobuf import json_format

from components import COMPONENT_IMAGE
from pipelines import vertex
from tests.unit.pipelines.fakes import IMAGE, NETWORK, WORKER_IMAGE, FakeStorageClient, example_env


def test_submit_sends_template_parameters_labels_network_and_service_account(
    tmp_path, captured, capsys
):
    env = example_env()
    request = vertex.build_job_request(
        env,
        "training",
        {"config_yaml": "experiment: x\n", "data_source": "gs://b/data/abc/x.csv.gz"},
        job_id="training-pipeline-20261127",
        credentials=AnonymousCredentials(),
    )
    name = vertex.submit(request)

    assert len(captured.requests) == 1
    body = json.loads(json_format.MessageToJson(captured.requests[0]._pb))
    assert body["parent"] == "projects/my-gcp-project/locations/europe-west4"
    assert body["pipelineJobId"] == "training-pipeline-20261127"
    job = body["pipelineJob"]
    assert job["serviceAccount"] == "pipelines@my-gcp-project.iam.gserviceaccount.com"
    assert job["network"] == NETWORK
    assert job["labels"]["team"] == "recs" and job["labels"]["env"] == "test"
    runtime = job["runtimeConfig"]
    # A failed trial must not stop the others: the policy is sent, not left to a default.
    assert runtime["failurePolicy"] == "PIPELINE_FAILURE_POLICY_FAIL_SLOW"
    assert runtime["gcsOutputDirectory"] == "gs://my-gcp-project-pipelines/root"
    params = runtime["parameterValues"]
    assert params["config_yaml"] == "experiment: x\n"
    assert params["data_source"] == "gs://b/data/abc/x.csv.gz"
    assert params["mlflow_tracking_uri"] == env.mlflow.tracking_uri
    assert params["train_memory_limit"] == "32G" and params["report_cpu_limit"] == "2"
    # The training machine is compiled into a spec (pipelines/tasks.py), not a parameter.
    assert not [p for p in params if p.startswith("train_machine")]
    assert params["beam_pipeline_args"][-1] == f"--sdk_container_image={WORKER_IMAGE}"
    spec = job["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == "training-pipeline"
    # Caching unset: no task's cachingOptions is overridden; train/evaluate/report stay uncached.
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["train-model"]["cachingOptions"] == {}
    assert tasks["ingest-data"]["cachingOptions"] == {"enableCache": True}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}, "the environment's image replaces the compiled default"
    assert COMPONENT_IMAGE not in json.dumps(spec)
    assert captured.buckets == ["gs://my-gcp-project-pipelines/root"]

    assert name == (
        "projects/my-gcp-project/locations/europe-west4/pipelineJobs/training-pipeline-20261127"
    )
    printed = capsys.readouterr().out
    assert (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
        "training-pipeline-20261127?project=my-gcp-project" in printed
    )


def test_enable_caching_flag_overrides_every_task(captured):
    request = vertex.build_job_request(
        example_env(),
        "training",
        {"config_yaml": "x: 1\n"},
        enable_caching=False,
        credentials=AnonymousCredentials(),
    )
    assert request.job.job_id.startswith("training-pipeline-")
    vertex.submit(request)
    tasks = captured.requests[0].pipeline_job.pipeline_spec["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"].get("enableCache", False) is False for t in tasks.values())


def test_packaged_template_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.path.isfile(vertex.spec_path("training"))
    assert vertex.spec_path("training_pipeline") == vertex.spec_path("training")


def test_undeclared_parameters_and_missing_specs_fail_clearly():
    with pytest.raises(vertex.SubmitError, match=r"declares no parameter\(s\) \['nope'\]"):
        vertex.build_job_request(
            example_env(), "training", {"nope": 1}, credentials=AnonymousCredentials()
        )
    with pytest.raises(FileNotFoundError, match="run `make compile`"):
        vertex.build_job_request(
            example_env(), "nonexistent", {}, credentials=AnonymousCredentials()
        )


def test_stage_data_source_is_content_addressed(tmp_path):
    source = tmp_path / "retail.csv.gz"
    source.write_bytes(b"a,b\n1,2\n")
    client = FakeStorageClient()
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
    client = FakeStorageClient()
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
