"""How the pipelines run their tasks on Vertex AI: resources, retries and the training machine.

Both pipelines apply the same rules, so they live here once:

- **Resources**: each step's CPU and memory limits are pipeline parameters
  (``<step>_cpu_limit``, ``<step>_memory_limit``, named by ``pipelines.env.STEPS``), so an
  environment file sets them at submit time. ``plan_sweep`` and ``bind_transforms`` (small
  lists) run on Vertex's default machine; ``select_best_model`` (reads MLflow, copies one
  model) shares the report's limits. KFP writes them as runtime placeholders
  (``resourceCpuLimit: {{$.inputs.parameters[...]}}``) that Vertex resolves when the task
  starts. A step inside a ParallelFor reads the parameter through the loop's inputs, which
  kfp 2.17 does not wire for limits by itself (``_register_limit_channels``); tests check
  every compiled variant's references (tests/unit/pipelines/test_spec_references.py), not a
  Vertex run. kfp.local ignores limits (it warns).
- **Retries**: every step may be retried; each redoes the same work into its own outputs, and
  a retried training resumes its MLflow run (``run_key``) instead of adding another. KFP
  cannot tell a transient failure from a lasting one, so the cheap steps retry twice after a
  short wait (GCS, Dataflow start-up, an MLflow cold start) and training once after a longer
  one (a diverged or out-of-memory training fails again, at a GPU machine's price).
- **Timeouts**: KFP v2's task spec and Vertex AI Pipelines have no per-task timeout; only the
  training custom job has one (``TrainMachine.timeout``, its ``scheduling.timeout``). A
  stuck step is stopped by cancelling the pipeline run.
- **Training machine**: with a ``TrainMachine``, training runs as a Vertex custom job
  (google-cloud-pipeline-components) on that machine; without one, as an ordinary step.
  GCPC writes the machine into the component's worker pool spec when the pipeline is
  compiled, so it is a compile-time choice (``python -m pipelines compile/submit --env``).

``python -m pipelines run`` (``make demo``) runs these same compiled specs with kfp.local:
it honours the retry policies (with their waits, so a failing training is retried once after
two minutes, as on Vertex) and ignores the limits, with a warning, since it runs every step
as a subprocess of one machine.
"""

from __future__ import annotations

import dataclasses

from kfp import dsl
from kfp.dsl import pipeline_channel

from components.evaluate import evaluate_model
from components.train import train_model
from pipelines.env import ModelUpload, TrainMachine
from trainer.contract import (
    ENV_ACCELERATOR_COUNT,
    ENV_ACCELERATOR_TYPE,
    ENV_MACHINE_TYPE,
    ENV_SCHEDULING,
)

# Vertex AI Pipelines' default machine for a step is e2-standard-4 (4 vCPUs, 16 GB): the
# defaults ask for that, so an environment file that sets nothing changes nothing.
DEFAULT_CPU_LIMIT = "4"
DEFAULT_MEMORY_LIMIT = "16G"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Arguments of ``PipelineTask.set_retry``: retries, first wait, growth, longest wait."""

    num_retries: int
    backoff_duration: str
    backoff_factor: float
    backoff_max_duration: str


# backoff_max_duration: KFP on Argo reads it as the window, from the first attempt's start,
# in which a retry may still begin (kubeflow/pipelines#14245), so a short one would never
# retry a long step; a day covers any step (training has its own timeout). Where it is read
# as the longest wait it changes nothing: the waits here are 30 s to 2 min.
STEP_RETRY = RetryPolicy(2, "30s", 2.0, "86400s")
TRAIN_RETRY = RetryPolicy(1, "120s", 2.0, "86400s")


def configure(
    task: dsl.PipelineTask,
    *,
    cpu_limit=None,
    memory_limit=None,
    retry: RetryPolicy | None = STEP_RETRY,
) -> dsl.PipelineTask:
    """Sets a task's CPU / memory limits (pipeline parameters) and retry policy.

    Args:
        task: A task of the pipeline being defined.
        cpu_limit: The step's ``<step>_cpu_limit`` pipeline parameter; None: no limit.
        memory_limit: The step's ``<step>_memory_limit`` pipeline parameter; None: no limit.
        retry: The retry policy; None: no retries.

    Returns:
        The task.
    """
    if cpu_limit is not None:
        task.set_cpu_limit(cpu_limit)
    if memory_limit is not None:
        task.set_memory_limit(memory_limit)
    _register_limit_channels(task, cpu_limit, memory_limit)
    if retry is not None:
        task.set_retry(**dataclasses.asdict(retry))
    return task


def _register_limit_channels(task: dsl.PipelineTask, *limits) -> None:
    """Makes the compiler pass a limit's pipeline parameter into the DAG the task sits in.

    kfp 2.17's ``set_cpu_limit`` / ``set_memory_limit`` accept a pipeline parameter and the
    compiler reads it from the task's DAG (``pipelinechannel--<name>``; "Inject resource
    fields into inputs" in kfp/compiler/pipeline_spec_builder.py), but they do not register
    the channel with the task, so ``compiler_utils.get_inputs_for_all_groups`` never adds it
    to an enclosing ParallelFor's inputs: the loop body reads an input that its component does
    not declare and that the loop task does not pass, which a strict backend (Vertex AI)
    refuses when the run starts. kfp's ``set_container_image`` registers its channel for this
    reason with ``PipelineTask.register_pipeline_channels``, which kfp added for the same
    gap in ``use_secret_as_env`` ("parent DAG does not have input parameter",
    kubeflow/pipelines#13078, fixed by #13128); it is used here for the limits likewise.
    tests/unit/pipelines/test_spec_references.py checks every compiled variant.
    """
    channels = [v for v in limits if isinstance(v, pipeline_channel.PipelineChannel)]
    if channels:
        task.register_pipeline_channels(channels)


def train_component(machine: TrainMachine | None, component=train_model):
    """The training component: ``train_model`` in-pipeline, or as a custom job on ``machine``.

    The custom job runs the component's own command in the component image (its worker pool
    spec), so it takes the same inputs and writes the same outputs. It runs as the pipeline
    job's service account and in its network (GCPC's runtime placeholders): GCPC's default is
    Vertex's Custom Code Service Agent, which may not call the private MLflow server. Project
    and location default to the pipeline job's. The image's environment
    (``MLFLOW_GOOGLE_AUTH_AUDIENCES``, ``TF_USE_LEGACY_KERAS``) applies as in any step.

    Args:
        machine: The environment's training machine; None or no machine type: in-pipeline.
        component: The training component to run so (the halving sweep's ``train_trial``).

    Returns:
        A component to call like ``train_model``.
    """
    if machine is None or not machine.machine_type:
        return component
    # Imported here: compiling the default specs needs kfp alone.
    from google_cloud_pipeline_components import _placeholders
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    accelerator = (
        {
            "accelerator_type": machine.accelerator_type,
            "accelerator_count": machine.accelerator_count,
        }
        if machine.accelerator_type
        else {}
    )
    return create_custom_training_job_from_component(
        component,
        display_name=component.name,
        machine_type=machine.machine_type,
        timeout=machine.timeout,
        service_account=_placeholders.SERVICE_ACCOUNT_PLACEHOLDER,
        network=_placeholders.NETWORK_PLACEHOLDER,
        # A worker whose VM is restarted (maintenance, a host error) is restarted by Vertex
        # inside the same job, since the pipeline does not retry a custom job (below).
        restart_job_on_worker_restart=True,
        strategy=machine.scheduling_strategy,
        # The job's machine, which the step cannot see, for its cost record (trainer/cost).
        env=machine_env(machine),
        # The environment's labels on the job itself. Vertex AI Pipelines adds its run's
        # labels, the billing id vertex-ai-pipelines-run-billing-id among them, to the custom
        # jobs of create_custom_training_job_from_component by itself
        # (https://cloud.google.com/vertex-ai/docs/pipelines/gcpc-label-propagation, "CustomJob
        # resources"), so the Cloud Billing export finds the job under both.
        labels=dict(machine.labels) or None,
        **accelerator,
    )


def machine_env(machine: TrainMachine) -> list[dict[str, str]]:
    """The custom job's environment that names its machine (``contract.ENV_*``: trainer/cost)."""
    values = {
        ENV_MACHINE_TYPE: machine.machine_type,
        ENV_ACCELERATOR_TYPE: machine.accelerator_type,
        ENV_ACCELERATOR_COUNT: str(machine.accelerator_count),
        ENV_SCHEDULING: machine.scheduling_strategy,
    }
    return [{"name": k, "value": v} for k, v in values.items() if v and v != "0"]


def configure_train(
    task: dsl.PipelineTask, machine: TrainMachine | None, *, cpu_limit, memory_limit
) -> dsl.PipelineTask:
    """Limits and retries of the training task; a custom job's machine is its own."""
    if machine is not None and machine.machine_type:
        # The task is the launcher that starts and polls the custom job: no limits of its own,
        # and no retry. A retried launcher finds the failed job's name in its gcp_resources
        # output and polls that job again instead of starting a new one
        # (google_cloud_pipeline_components/container/v1/gcp_launcher/job_remote_runner.py,
        # check_if_job_exists), so a pipeline retry would only fail again. A failed custom-job
        # training fails its task; rerunning the pipeline job resumes its MLflow run (run key).
        return configure(task, retry=None)
    return configure(task, cpu_limit=cpu_limit, memory_limit=memory_limit, retry=TRAIN_RETRY)


def train_and_evaluate(
    *,
    train_machine: TrainMachine | None,
    limits: dict,
    config_yaml,
    examples,
    transform_graph,
    mlflow_tracking_uri,
    prices,
    component=train_model,
    **ids,
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """Adds a training and its evaluation to the pipeline being defined; both pipelines use it.

    Args:
        train_machine: The training machine (a custom job) or None (an ordinary step).
        limits: ``(cpu_limit, memory_limit)`` pipeline parameters by step: "train", "evaluate".
        config_yaml: The experiment config parameter.
        examples: The ingest output.
        transform_graph: The transform output of the training's feature config.
        mlflow_tracking_uri: The tracking URI parameter.
        prices: The price-table overrides parameter (evaluate logs the run's cost with them).
        component: The training component (the halving sweep's: ``train_trial``).
        **ids: ``feature_config_id``, ``model_config_id`` and (sweep) ``seed``; (halving)
            ``rung`` and ``resume_from``.

    Returns:
        (the train task, the evaluate task).
    """
    train = train_component(train_machine, component)(
        config_yaml=config_yaml,
        examples=examples,
        transform_graph=transform_graph,
        mlflow_tracking_uri=mlflow_tracking_uri,
        pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        pipeline_task=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
        **ids,
    )
    cpu, memory = limits["train"]
    configure_train(train, train_machine, cpu_limit=cpu, memory_limit=memory)
    evaluate = evaluate_model(
        examples=examples,
        model=train.outputs["model"],
        mlflow_tracking_uri=mlflow_tracking_uri,
        transform_graph=transform_graph,
        prices=prices,
    )
    cpu, memory = limits["evaluate"]
    configure(evaluate, cpu_limit=cpu, memory_limit=memory)
    return train, evaluate


def upload_champion(promoted: dsl.PipelineTask, upload: ModelUpload) -> dsl.PipelineTask:
    """Uploads the new champion to the Vertex Model Registry (and deploys it, with an endpoint).

    Run it under a condition on ``promoted``'s ``moved``: only a model that became champion is
    uploaded, as a new version of ``upload.parent_model`` (the first upload without one
    creates the model), with the version alias ``champion``. The SavedModel URI comes from
    the promote step at run time (an importer with a runtime ``artifact_uri``). With an
    ``endpoint`` the version is deployed there on ``upload.machine_type`` with all traffic
    (``traffic_split {"0": 100}``: "0" is the model being deployed, per GCPC's ModelDeployOp).

    Returns:
        The upload task (its ``model`` output is the Vertex model version).
    """
    from google_cloud_pipeline_components.types import artifact_types
    from google_cloud_pipeline_components.v1.endpoint import ModelDeployOp
    from google_cloud_pipeline_components.v1.model import ModelUploadOp

    from trainer import registry

    model = dsl.importer(
        artifact_uri=promoted.outputs["artifact_uri"],
        artifact_class=artifact_types.UnmanagedContainerModel,
        metadata={"containerSpec": registry.predictor_container(upload.image)},
    ).set_display_name("champion-saved-model")
    parent = None
    if upload.parent_model:
        parent = _resource(upload, upload.parent_model, artifact_types.VertexModel, "parent-model")
    uploaded = ModelUploadOp(
        display_name=upload.display_name,
        location=upload.region,
        unmanaged_container_model=model.output,
        parent_model=parent.output if parent is not None else None,
        version_aliases=["champion"],
        description="The sweep's champion (MLflow registry alias champion), promoted by its gate.",
    ).set_display_name("upload-champion")
    if upload.endpoint:
        endpoint = _resource(
            upload, upload.endpoint, artifact_types.VertexEndpoint, "champion-endpoint"
        )
        ModelDeployOp(
            model=uploaded.outputs["model"],
            endpoint=endpoint.output,
            dedicated_resources_machine_type=upload.machine_type,
            dedicated_resources_min_replica_count=1,
            dedicated_resources_max_replica_count=1,
            traffic_split={"0": 100},
        ).set_display_name("deploy-champion")
    return uploaded


def _resource(upload: ModelUpload, name: str, artifact_class, display_name: str):
    """An importer of an existing Vertex resource (a model, an endpoint) as GCPC reads it."""
    return dsl.importer(
        artifact_uri=f"https://{upload.region}-aiplatform.googleapis.com/v1/{name}",
        artifact_class=artifact_class,
        metadata={"resourceName": name},
    ).set_display_name(display_name)
