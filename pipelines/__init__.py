"""KFP pipelines and their compile / run / submit command line."""

from pipelines.env import ModelUpload, TrainMachine
from pipelines.halving import DEFAULT_RUNG_STAGES, halving_pipeline, make_halving_pipeline
from pipelines.sweep import DEFAULT_PARALLELISM, make_sweep_pipeline, sweep_pipeline
from pipelines.training import make_training_pipeline, training_pipeline

SPEC_DIR = "pipeline_specs"
# Every pipeline, by the name of its compiled spec (pipeline_specs/<name>.yaml): the packaged
# variant (training as an ordinary step, retries and resource limits set).
PIPELINES = {
    "training_pipeline": training_pipeline,
    "sweep_pipeline": sweep_pipeline,
    "halving_pipeline": halving_pipeline,
}
# `--pipeline` names on the command line.
PIPELINE_CHOICES = {
    "sweep": "sweep_pipeline",
    "training": "training_pipeline",
    "halving": "halving_pipeline",
}


def build_pipeline(
    name: str,
    *,
    parallelism: int | None = None,
    train_machine: TrainMachine | None = None,
    model_upload: ModelUpload | None = None,
    rung_stages: int | None = None,
):
    """A pipeline by spec name, built with compile-time settings.

    Args:
        name: ``sweep_pipeline``, ``halving_pipeline`` or ``training_pipeline``.
        parallelism: The sweep's trainings at once; its default when None.
        train_machine: Train as a Vertex custom job on this machine; in-pipeline when None.
        model_upload: The sweep uploads each new champion to the Vertex Model Registry there;
            None: a promotion moves the MLflow alias only.
        rung_stages: The halving pipeline's rung stages; its default when None.

    Returns:
        The pipeline.
    """
    if name == "sweep_pipeline":
        return make_sweep_pipeline(parallelism or DEFAULT_PARALLELISM, train_machine, model_upload)
    if name == "halving_pipeline":
        return make_halving_pipeline(
            parallelism, train_machine, model_upload, rung_stages or DEFAULT_RUNG_STAGES
        )
    if name == "training_pipeline":
        return make_training_pipeline(train_machine)
    raise KeyError(f"no pipeline {name!r} (known: {', '.join(PIPELINES)})")


__all__ = [
    "DEFAULT_RUNG_STAGES",
    "PIPELINES",
    "PIPELINE_CHOICES",
    "SPEC_DIR",
    "build_pipeline",
    "make_halving_pipeline",
    "make_sweep_pipeline",
    "make_training_pipeline",
]
