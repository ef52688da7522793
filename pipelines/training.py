"""training_pipeline: ingest -> transform -> train -> evaluate -> report, for one config pair."""

from kfp import dsl

from components.evaluate import evaluate_model
from components.ingest import ingest_data
from components.report import render_report
from components.train import train_model
from components.transform import transform_data
from trainer.contract import DEFAULT_RANK_METRIC

PIPELINE_NAME = "training-pipeline"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description=(
        "Trains one two-tower retrieval model (feature config x model config of an experiment "
        "YAML), tracks it in MLflow and renders the experiment report."
    ),
)
def training_pipeline(
    config_yaml: str,
    mlflow_tracking_uri: str,
    feature_config_id: str = "",
    model_config_id: str = "",
    data_source: str = "",
    beam_pipeline_args: list = [],
    rank_metric: str = DEFAULT_RANK_METRIC,
    mlflow_ui_url: str = "",
    fail_on_unreachable_mlflow: bool = True,
) -> dsl.HTML:
    """Trains, evaluates and reports one run of an experiment.

    Args:
        config_yaml: The experiment config (YAML text); see configs/online_retail.yaml.
        mlflow_tracking_uri: MLflow tracking URI (sqlite:///... locally, the Cloud Run URL on
            Vertex).
        feature_config_id: Which feature config of the YAML; the first when empty.
        model_config_id: Which model config of the YAML; the first when empty.
        data_source: Overrides the YAML's dataset.source (local path or gs:// URI).
        beam_pipeline_args: Beam options for the transform; DirectRunner when empty.
        rank_metric: Metric the report ranks runs by.
        mlflow_ui_url: MLflow UI base URL for links from the report.
        fail_on_unreachable_mlflow: Fail the report step when MLflow does not answer.
    """
    ingest = ingest_data(config_yaml=config_yaml, data_source=data_source)
    transform = transform_data(
        config_yaml=config_yaml,
        examples=ingest.outputs["examples"],
        feature_config_id=feature_config_id,
        beam_pipeline_args=beam_pipeline_args,
    )
    train = train_model(
        config_yaml=config_yaml,
        examples=ingest.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        mlflow_tracking_uri=mlflow_tracking_uri,
        feature_config_id=feature_config_id,
        model_config_id=model_config_id,
        pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        pipeline_task=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
    )
    evaluate = evaluate_model(
        examples=ingest.outputs["examples"],
        model=train.outputs["model"],
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    report = render_report(
        config_yaml=config_yaml,
        mlflow_tracking_uri=mlflow_tracking_uri,
        rank_metric=rank_metric,
        mlflow_ui_url=mlflow_ui_url,
        fail_on_unreachable=fail_on_unreachable_mlflow,
        highlight_run_id=evaluate.outputs["Output"],
    )
    # Ingest and transform are pure functions of their inputs and may be cached; the rest write
    # to MLflow, so a rerun must really run them.
    for task in (train, evaluate, report):
        task.set_caching_options(False)
    return report.outputs["leaderboard"]
