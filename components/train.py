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
    pipeline_job: str = dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    pipeline_task: str = dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
) -> str:
    """Trains one (feature config, model config) pair; returns the MLflow run id.

    Args:
        config_yaml: The experiment config (YAML text).
        examples: The ingest output (catalog and raw splits for validation recall).
        transform_graph: The transform output.
        model: Output folder: the serving SavedModel, the resolved config, mlflow_run.json.
        mlflow_tracking_uri: MLflow tracking URI; a tracking outage does not stop training.
        feature_config_id: Which feature config; the first when empty.
        model_config_id: Which model config; the first when empty.
        pipeline_job: KFP pipeline job name, tagged on the MLflow run.
        pipeline_task: KFP task name, tagged on the MLflow run.
    """
    from trainer import config as cfg
    from trainer import train

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    result = train.run_training(
        config,
        examples.path,
        transform_graph.path,
        model.path,
        tracking_uri=mlflow_tracking_uri,
        feature_config_id=feature_config_id,
        model_config_id=model_config_id,
        pipeline_job=pipeline_job,
        pipeline_task=pipeline_task,
    )
    model.metadata.update(
        {
            "mlflow_run_id": result.run_id or "",
            "best_epoch": result.best_epoch,
            "tracking_degraded": result.tracking_degraded or "",
        }
    )
    return result.run_id or ""
