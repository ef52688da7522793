"""KFP pipelines and their compile / run / submit command line."""

from pipelines.sweep import make_sweep_pipeline, sweep_pipeline
from pipelines.training import training_pipeline

SPEC_DIR = "pipeline_specs"
# Every pipeline, by the name of its compiled spec (pipeline_specs/<name>.yaml).
PIPELINES = {"training_pipeline": training_pipeline, "sweep_pipeline": sweep_pipeline}
# `--pipeline` names on the command line.
PIPELINE_CHOICES = {"sweep": "sweep_pipeline", "training": "training_pipeline"}
__all__ = ["PIPELINES", "PIPELINE_CHOICES", "SPEC_DIR", "make_sweep_pipeline"]
