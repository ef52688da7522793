"""halving_pipeline: the sweep with successive halving, its rungs in one pipeline run.

KFP v2 has no loops over tasks or recursion, so the rungs are stages fixed when the pipeline
is compiled (``python -m pipelines compile --rungs N``, default ``DEFAULT_RUNG_STAGES``): an
``advance_rung`` step lists what the next stage trains, a ParallelFor trains it
(``train_trial``, each trial going on from its previous rung's checkpoint in the same MLflow
run), and the next ``advance_rung`` keeps the best 1/eta, read from MLflow, and tags the
others stopped. The final stage is the sweep's own trainings loop: the kept trials train to
``training.epochs``, are evaluated, and compete; the report, best model, registration and
gate follow as in the grid sweep (pipelines/sweep.py builds both). A config with fewer rungs
leaves the first stages empty (trainer/sweep/halving.py); one that is not halving trains
every run in the final stage, as the sweep does.

What runs alike on kfp.local and Vertex decided the shape: a stage's results go through
MLflow, not through ``dsl.Collected`` (a stage may be empty, and kfp 2.17's local runner
publishes no outputs for a ParallelFor over an empty list, kfp/local/orchestrator/
enhanced_dag_orchestrator.py ``_run_parallel_for_task``); each ``advance_rung`` depends on
its stage by ``.after`` only and runs whatever the stage's outcome
(``ignore_upstream_failure``, so a failed trial does not end the sweep), which needs a
default for its one task-produced input (kfp/dsl/pipeline_task.py
``ignore_upstream_failure``). Loops stay flat and sibling, each over one task's single output,
as DESIGN.md's measurements of kfp.local's ParallelFor require.
"""

from kfp import dsl

from components.halving import advance_rung, train_trial
from pipelines.env import ModelUpload, TrainMachine
from pipelines.tasks import configure, configure_train, train_component

PIPELINE_NAME = "halving-pipeline"
DESCRIPTION = (
    "Successive halving over the trials of an experiment YAML's search spaces: one ingest, "
    "one transform per feature config, every trial trained through the first rung, the best "
    "1/eta of each rung trained further from their checkpoints, the last rung's trials "
    "evaluated; one report over all runs, the best run's model registered as the "
    "challenger, and the promotion gate against the champion."
)
# Rung stages compiled in, the final one included: eta 3 from 1 epoch reaches 27 epochs.
DEFAULT_RUNG_STAGES = 4

__all__ = [
    "DEFAULT_RUNG_STAGES",
    "add_rung_stages",
    "halving_pipeline",
    "make_halving_pipeline",
    "train_trial",
]


def add_rung_stages(
    stages: int,
    *,
    parallelism: int,
    train_machine: TrainMachine | None,
    train_limits: tuple,
    config_yaml,
    examples,
    mlflow_tracking_uri,
    trainings,
    prices,
) -> dsl.PipelineTask:
    """Adds the rung stages before the final one to the pipeline being defined.

    Args:
        stages: Rung stages, the final one (the caller's trainings loop) included.
        parallelism: Trainings at once in each stage.
        train_machine: The training machine (a custom job) or None (an ordinary step).
        train_limits: ``(cpu_limit, memory_limit)`` pipeline parameters of a training.
        config_yaml: The experiment config parameter.
        examples: The ingest output.
        mlflow_tracking_uri: The tracking URI parameter.
        trainings: Every training with its transform URI (the bind_transforms output).
        prices: The price-table overrides parameter (the stopped trials' cost).

    Returns:
        The last ``advance_rung`` task: its output is what the final stage trains.
    """
    job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    common = {
        "config_yaml": config_yaml,
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "stages": stages,
        "trainings": trainings,
        "pipeline_job": job,
        "prices": prices,
    }
    advance = advance_rung(stage=0, **common)
    for stage in range(1, stages):
        configure(advance).set_caching_options(False)
        with dsl.ParallelFor(advance.output, parallelism=parallelism, name=f"rung-{stage}") as run:
            transform_graph = dsl.importer(
                artifact_uri=run.transform_uri, artifact_class=dsl.Artifact, reimport=False
            )
            train = train_component(train_machine, train_trial)(
                config_yaml=config_yaml,
                examples=examples,
                transform_graph=transform_graph.output,
                mlflow_tracking_uri=mlflow_tracking_uri,
                feature_config_id=run.feature_config_id,
                model_config_id=run.model_config_id,
                seed=run.seed,
                rung=run.rung,
                resume_from=run.resume_from,
                pipeline_job=job,
                pipeline_task=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            )
            cpu, memory = train_limits
            configure_train(train, train_machine, cpu_limit=cpu, memory_limit=memory)
            train.set_caching_options(False)
        # Judged whatever the stage's outcome: a failed trial goes no further, the rest do.
        advance = advance_rung(stage=stage, **common).after(train)
        advance.ignore_upstream_failure()
    configure(advance).set_caching_options(False)
    return advance


def make_halving_pipeline(
    parallelism: int | None = None,
    train_machine: TrainMachine | None = None,
    model_upload: ModelUpload | None = None,
    stages: int = DEFAULT_RUNG_STAGES,
):
    """The halving pipeline: the sweep pipeline with ``stages`` rung stages.

    Args:
        parallelism: Trainings at once in each stage; the sweep's default when None.
        train_machine: Train each trial as a Vertex custom job on this machine.
        model_upload: Upload each new champion to the Vertex Model Registry as this says.
        stages: Rung stages, the final one included (at least 2).

    Returns:
        The pipeline.
    """
    from pipelines.sweep import DEFAULT_PARALLELISM, make_sweep_pipeline

    if stages < 2:
        raise ValueError(f"a halving pipeline has at least 2 rung stages, not {stages}")
    return make_sweep_pipeline(
        parallelism or DEFAULT_PARALLELISM, train_machine, model_upload, rung_stages=stages
    )


halving_pipeline = make_halving_pipeline()
