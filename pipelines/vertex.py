"""Submit a compiled pipeline to Vertex AI Pipelines with an environment file.

``stage_data_source`` uploads a local data source under the pipeline root (content-addressed,
so a rerun reuses it); ``build_job_request`` builds the ``aiplatform.PipelineJob`` from the
packaged spec, the environment and the run's parameters; ``submit`` sends it and prints the
console URL. Standard library at module top: google-cloud-aiplatform and google-cloud-storage
are imported where they are used, so compiling never needs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import time
from typing import Any

from components import COMPONENT_IMAGE, with_image
from pipelines import SPEC_DIR as SPEC_DIR_NAME
from pipelines.env import EnvConfig

# pipeline_specs/ sits next to the package in a checkout (and in the component image).
SPEC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), SPEC_DIR_NAME)
CONSOLE_URL = (
    "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job_id}"
    "?project={project}"
)
_CHUNK = 1 << 20
# Sent explicitly rather than left to Vertex's default (today the same): a failed training must
# not stop the sweep's other trainings from being scheduled, and the report and best-model
# steps run after all of them
# ("slow" = PIPELINE_FAILURE_POLICY_FAIL_SLOW; aiplatform's PipelineJob(failure_policy=)).
FAILURE_POLICY = "slow"


class SubmitError(ValueError):
    """A submit that cannot go ahead as asked; the message says what to do instead."""


class JobFailedError(RuntimeError):
    """A followed job (``submit(..., wait=True)``) ended in another state than SUCCEEDED."""


@dataclasses.dataclass
class JobRequest:
    """A built, not yet submitted pipeline job and what ``submit`` passes with it."""

    job: Any  # google.cloud.aiplatform.PipelineJob
    service_account: str
    network: str
    experiment: str
    console_url: str


def spec_path(pipeline: str) -> str:
    """The packaged compiled spec of ``pipeline`` (``sweep``, ``training`` or ``*_pipeline``)."""
    name = pipeline if pipeline.endswith("_pipeline") else f"{pipeline}_pipeline"
    return os.path.join(SPEC_DIR, f"{name}.yaml")


def _digest(local_path: str) -> tuple[str, list[tuple[str, str]]]:
    """Content hash of a file or folder, and its files as (absolute path, relative name)."""
    if os.path.isdir(local_path):
        files = sorted(
            (os.path.join(folder, name), os.path.relpath(os.path.join(folder, name), local_path))
            for folder, _, names in os.walk(local_path)
            for name in names
        )
    else:
        files = [(local_path, "")]
    sha = hashlib.sha256()
    for path, rel in files:
        sha.update(rel.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                sha.update(chunk)
        sha.update(b"\0")
    return sha.hexdigest()[:16], files


def stage_data_source(local_path: str, pipeline_root: str, client: Any = None) -> str:
    """Uploads a local data source under the pipeline root; returns its gs:// URI.

    The object name carries the content hash (``<root>/data/<sha256[:16]>/<name>``), so a
    rerun with the same data uploads nothing and a changed file never overwrites the one an
    earlier run read. A folder (e.g. Parquet parts) is uploaded file by file under its name.

    Args:
        local_path: A local file or folder; gs:// and bq:// sources are returned unchanged.
        pipeline_root: The environment's gs:// pipeline root.
        client: A ``google.cloud.storage.Client``; a default one when None.

    Returns:
        The gs:// URI of the staged file or folder.

    Raises:
        FileNotFoundError: ``local_path`` does not exist.
        ValueError: ``pipeline_root`` is not a gs:// folder.
    """
    if re.match(r"^[a-z][a-z0-9+.-]*://", local_path):
        return local_path
    if not pipeline_root.startswith("gs://"):
        raise ValueError(f"pipeline_root: expected a gs:// folder, got {pipeline_root!r}")
    if not os.path.exists(local_path):
        raise FileNotFoundError(f"data source {local_path!r} does not exist")
    digest, files = _digest(local_path)
    bucket_name, _, prefix = pipeline_root[len("gs://") :].partition("/")
    base = "/".join(p for p in (prefix.strip("/"), "data", digest) if p)
    base = f"{base}/{os.path.basename(os.path.normpath(local_path))}"
    if client is None:
        from google.cloud import storage

        client = storage.Client()
    bucket = client.bucket(bucket_name)
    for path, rel in files:
        blob = bucket.blob(f"{base}/{rel}" if rel else base)
        if not blob.exists():
            blob.upload_from_filename(path)
    return f"gs://{bucket_name}/{base}"


def _template(env: EnvConfig, template_path: str) -> tuple[str, dict]:
    """The spec text to send (with the environment's image) and its parsed form."""
    import yaml

    if not os.path.exists(template_path):
        raise FileNotFoundError(f"{template_path} does not exist: run `make compile`")
    with open(template_path, encoding="utf-8") as f:
        text = f.read()
    if env.image and env.image not in text:
        if COMPONENT_IMAGE not in text:
            raise SubmitError(
                f"{template_path} was compiled with another image than the default; "
                f"{env.source}: image {env.image} cannot be set in it: compile it again"
            )
        text = with_image(text, env.image)
    return text, yaml.safe_load(text)


def build_job_request(
    env: EnvConfig,
    pipeline: str,
    parameter_values: dict[str, Any],
    *,
    template_path: str = "",
    job_id: str = "",
    display_name: str = "",
    enable_caching: bool | None = None,
    experiment: str = "",
    credentials: Any = None,
) -> JobRequest:
    """Builds the Vertex AI pipeline job for ``pipeline`` in environment ``env``.

    Args:
        env: The validated environment (``pipelines.env.load_env``).
        pipeline: ``sweep`` / ``training`` (or ``<name>_pipeline``): which packaged spec.
        parameter_values: The run's parameters (config_yaml, data_source, ...); they win over
            the environment's (``EnvConfig.pipeline_parameters``) on a shared name.
        template_path: Another compiled spec; the packaged one when empty.
        job_id: The job's id; ``<pipeline name>-<UTC timestamp>`` when empty.
        display_name: Shown in the console; the job id when empty.
        enable_caching: None leaves caching to each task's setting in the spec; True / False
            override every task.
        experiment: A Vertex AI experiment to associate the run with; none when empty.
        credentials: google-auth credentials; application default credentials when None.

    Returns:
        The job and what ``submit`` sends with it.

    Raises:
        SubmitError: A parameter the spec does not declare, or an image that cannot be set.
        FileNotFoundError: The spec is not compiled.
    """
    from google.cloud import aiplatform

    path = template_path or spec_path(pipeline)
    text, spec = _template(env, path)
    declared = spec["root"]["inputDefinitions"].get("parameters", {})
    values = {**env.pipeline_parameters(), **parameter_values}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise SubmitError(f"{path} declares no parameter(s) {unknown}; run `make compile`")
    job_id = (
        job_id or f"{spec['pipelineInfo']['name']}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    )
    # PipelineJob reads the template when it is built; the file is needed only until then.
    with tempfile.TemporaryDirectory(prefix="b2b-recs-submit-") as folder:
        sent = os.path.join(folder, os.path.basename(path))
        with open(sent, "w", encoding="utf-8") as f:
            f.write(text)
        job = aiplatform.PipelineJob(
            display_name=display_name or job_id,
            template_path=sent,
            job_id=job_id,
            pipeline_root=env.pipeline_root,
            parameter_values=values,
            enable_caching=enable_caching,
            labels=dict(env.labels),
            credentials=credentials,
            project=env.project,
            location=env.region,
            failure_policy=FAILURE_POLICY,
        )
    url = CONSOLE_URL.format(region=env.region, job_id=job_id, project=env.project)
    return JobRequest(job, env.service_account, env.network, experiment, url)


def submit(request: JobRequest, wait: bool = False) -> str:
    """Submits the job, prints its console URL, and with ``wait`` follows it to its end.

    Args:
        request: What ``build_job_request`` built.
        wait: Block until the job ends; a failed or cancelled job raises.

    Returns:
        The job's resource name (projects/.../pipelineJobs/<id>).

    Raises:
        JobFailedError: With ``wait``, the job ended in another state than SUCCEEDED.
    """
    request.job.submit(
        service_account=request.service_account or None,
        network=request.network or None,
        experiment=request.experiment or None,
    )
    print(f"submitted: {request.job.resource_name}\nconsole:   {request.console_url}", flush=True)
    if wait:
        try:
            request.job.wait()
        except RuntimeError as err:  # aiplatform's way to say FAILED / CANCELLED
            message = " ".join(str(err).split())
            raise JobFailedError(f"{request.job.resource_name}: {message}") from err
        print(f"finished:  {request.job.state.name}", flush=True)
    return request.job.resource_name
