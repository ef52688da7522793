"""KFP pipelines and their compile / run / submit command line."""

from pipelines.training import training_pipeline

SPEC_DIR = "pipeline_specs"
# Every pipeline, by the name of its compiled spec (pipeline_specs/<name>.yaml).
PIPELINES = {"training_pipeline": training_pipeline}
