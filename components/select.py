"""select_best_model: the sweep's best run's model, for upload or deployment."""

from kfp import dsl
from kfp.dsl import Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def select_best_model(
    config_yaml: str,
    mlflow_tracking_uri: str,
    best_model: Output[Model],
    rank_metric: str,
    pipeline_job: str = "",
):
    """Copies the model of this pipeline job's best finished run (by rank_metric).

    Args:
        config_yaml: The experiment config (YAML text); names the MLflow experiment.
        mlflow_tracking_uri: MLflow tracking URI.
        best_model: Output folder: the best run's serving model, resolved config and run info;
            its metadata carries the MLflow run id, the configs, the seed and test metrics.
        rank_metric: The metric that decides (its direction comes from the MLflow contract).
        pipeline_job: The pipeline job whose runs compete.
    """
    from reporting import best
    from trainer import config as cfg

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    run = best.best_run(mlflow_tracking_uri, config.experiment, rank_metric, pipeline_job)
    best.copy_model(run.model_uri, best_model.path)
    best_model.metadata.update(
        {
            "mlflow_run_id": run.run_id,
            "feature_config_id": run.feature_config_id,
            "model_config_id": run.model_config_id,
            "seed": run.seed,
            "rank_metric": rank_metric,
            **run.metrics,
        }
    )
