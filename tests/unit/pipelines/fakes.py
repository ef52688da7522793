"""Fakes for submit tests: the gRPC calls of the aiplatform client, google-cloud-storage."""

import os

import pytest
import yaml
from google.cloud.aiplatform_v1.services.pipeline_service.transports.grpc import (
    PipelineServiceGrpcTransport,
)
from google.cloud.aiplatform_v1.types import pipeline_job as gca_pipeline_job
from google.cloud.aiplatform_v1.types import pipeline_state

from pipelines import env as envmod

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
IMAGE = "europe-west4-docker.pkg.dev/my-gcp-project/pipelines/b2b-recs:1.2.3"
WORKER_IMAGE = "europe-west4-docker.pkg.dev/my-gcp-project/pipelines/b2b-recs-dataflow-worker:1.2.3"
NETWORK = "projects/123456789/global/networks/recs-vpc"


def example_env_data(**changes) -> dict:
    """configs/env/example.yaml's fields, with a network, an image and test labels."""
    with open(os.path.join(REPO, "configs", "env", "example.yaml")) as f:
        data = yaml.safe_load(f)
    data.update(network=NETWORK, image=IMAGE, labels={"team": "recs", "env": "test"}, **changes)
    return data


def example_env(**changes) -> envmod.EnvConfig:
    return envmod.parse_env(example_env_data(**changes), "configs/env/test.yaml")


class Captured:
    """What the aiplatform client asked of Vertex AI, and what the job's state is said to be."""

    def __init__(self):
        self.requests, self.buckets = [], []
        self.final_state = pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED

    def create_pipeline_job(self, request, timeout=None, metadata=()):
        self.requests.append(request)
        job = gca_pipeline_job.PipelineJob(request.pipeline_job)
        job.name = f"{request.parent}/pipelineJobs/{request.pipeline_job_id}"
        job.state = pipeline_state.PipelineState.PIPELINE_STATE_PENDING
        self.job = job
        return job

    def get_pipeline_job(self, request, timeout=None, metadata=()):
        job = gca_pipeline_job.PipelineJob(self.job)
        job.state = self.final_state
        if self.final_state != pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED:
            job.error.message = "The DAG failed because some tasks failed."
        return job


@pytest.fixture
def captured(monkeypatch):
    """CreatePipelineJob / GetPipelineJob, answered here instead of by Vertex AI."""
    seen = Captured()
    # The transport wraps these callables at construction; replacing the properties replaces
    # the RPCs and nothing above them (request assembly, routing headers, the client wrapper).
    for rpc in ("create_pipeline_job", "get_pipeline_job"):
        monkeypatch.setattr(
            PipelineServiceGrpcTransport, rpc, property(lambda self, rpc=rpc: getattr(seen, rpc))
        )
    # submit() first checks the pipeline root's bucket with google-cloud-storage (best effort,
    # errors only logged); keep that offline and record what it was asked.
    monkeypatch.setattr(
        "google.cloud.aiplatform.pipeline_jobs.gcs_utils."
        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        lambda **kwargs: seen.buckets.append(kwargs["output_artifacts_gcs_dir"]),
    )
    return seen


class FakeStorageClient:
    """The calls stage_data_source makes of google.cloud.storage.Client, kept in a dict."""

    instances: list = []

    def __init__(self, *args, **kwargs):
        self.objects, self.uploads, self.buckets = {}, 0, []
        FakeStorageClient.instances.append(self)

    def bucket(self, name):
        self.buckets.append(name)
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
