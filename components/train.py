"""train_model: fit and export the two-tower model, tracked in MLflow (Trainer)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_model(
    config_yaml: str,
    examples: Input[Dataset],
    transform_graph: Input[Artifact],
    model: Output[Model],
    mlflow_tracking_uri: str,
    feature_config_id: str = "",
    model_config_id: str = "",
    seed: int = -1,
    pipeline_job: str = "",
    pipeline_task: str = "",
) -> str:
    """Trains one (feature config, model config, seed); returns the MLflow run id.

    Args:
        config_yaml: The experiment config (YAML text).
        examples: The ingest output (catalog and raw splits for validation recall).
        transform_graph: The transform output of the feature config.
        model: Output folder: the serving SavedModel, the resolved config, mlflow_run.json.
        mlflow_tracking_uri: MLflow tracking URI; a tracking outage does not stop training.
        feature_config_id: Which feature config; the first when empty.
        model_config_id: Which model config; the first when empty.
        seed: Random seed; negative (the default): the config's training.seed. (kfp.local
            cannot pass an optional int left unset.)
        pipeline_job: KFP pipeline job name, tagged on the MLflow run; with the configs and
            the seed it keys the run, so a retried task resumes it instead of adding another.
        pipeline_task: KFP task name, tagged on the MLflow run.
    """
    from trainer import config as cfg
    from trainer import contract, cost, sweep, train

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    # Its wall time and machine, written beside the model for the run's cost (evaluate logs it).
    timer = cost.StepTimer("train")
    result = train.run_training(
        config,
        examples.path,
        transform_graph.path,
        model.path,
        tracking_uri=mlflow_tracking_uri,
        feature_config_id=feature_config_id,
        model_config_id=model_config_id,
        seed=seed,
        pipeline_job=pipeline_job,
        pipeline_task=pipeline_task,
        run_key=sweep.run_key(config, pipeline_job, feature_config_id, model_config_id, seed),
        extra_tags={contract.TAG_MODEL_URI: model.uri},
    )
    timer.stop(model.path)
    model.metadata.update(
        {
            "mlflow_run_id": result.run_id or "",
            "best_epoch": result.best_epoch,
            "tracking_degraded": result.tracking_degraded or "",
        }
    )
    return result.run_id or ""
