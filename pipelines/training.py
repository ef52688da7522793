"""training_pipeline: ingest -> transform -> train -> evaluate -> report, for one config pair."""

from kfp import dsl

from components.ingest import ingest_data
from components.report import render_report
from components.transform import transform_data
from pipelines.env import TrainMachine
from pipelines.tasks import (
    DEFAULT_CPU_LIMIT,
    DEFAULT_MEMORY_LIMIT,
    configure,
    train_and_evaluate,
)
from trainer.contract import DEFAULT_DETAIL_RUNS, DEFAULT_RANK_METRIC, DEFAULT_TOP_N

PIPELINE_NAME = "training-pipeline"


def make_training_pipeline(train_machine: TrainMachine | None = None):
    """The training pipeline, as compiled for Vertex AI (and run from that spec by kfp.local).

    Args:
        train_machine: Train as a Vertex custom job on this machine; None (or no machine
            type): as an ordinary step with the train_* limits.

    Returns:
        The pipeline.
    """

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "Trains one two-tower retrieval model (feature config x model config of an "
            "experiment YAML), tracks it in MLflow and renders the experiment report."
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
        ingest_cpu_limit: str = DEFAULT_CPU_LIMIT,
        ingest_memory_limit: str = DEFAULT_MEMORY_LIMIT,
        transform_cpu_limit: str = DEFAULT_CPU_LIMIT,
        transform_memory_limit: str = DEFAULT_MEMORY_LIMIT,
        train_cpu_limit: str = DEFAULT_CPU_LIMIT,
        train_memory_limit: str = DEFAULT_MEMORY_LIMIT,
        evaluate_cpu_limit: str = DEFAULT_CPU_LIMIT,
        evaluate_memory_limit: str = DEFAULT_MEMORY_LIMIT,
        report_cpu_limit: str = DEFAULT_CPU_LIMIT,
        report_memory_limit: str = DEFAULT_MEMORY_LIMIT,
        prices: dict = {},
    ) -> dsl.HTML:
        """Trains, evaluates and reports one run of an experiment.

        Args:
            config_yaml: The experiment config (YAML text); see configs/online_retail.yaml.
            mlflow_tracking_uri: MLflow tracking URI (sqlite:///... locally, the Cloud Run
                URL on Vertex).
            feature_config_id: Which feature config of the YAML; the first when empty.
            model_config_id: Which model config of the YAML; the first when empty.
            data_source: Overrides the YAML's dataset.source (local path or gs:// URI).
            beam_pipeline_args: Beam options for the transform; DirectRunner when empty.
            rank_metric: Metric the report ranks runs by (default: the best epoch's validation
                recall@100; test metrics are shown, never chosen by).
            mlflow_ui_url: MLflow UI base URL for links from the report.
            fail_on_unreachable_mlflow: Fail the report step when MLflow does not answer.
            ingest_cpu_limit: CPU limit of the ingest step (whole CPUs or millicores: 4, 500m).
            ingest_memory_limit: Memory limit of the ingest step (in K, M or G: 16G, 512M).
            transform_cpu_limit: CPU limit of the transform step (the Beam launcher).
            transform_memory_limit: Memory limit of the transform step.
            train_cpu_limit: CPU limit of the training step; unused when training runs as a
                custom job (its machine type decides).
            train_memory_limit: Memory limit of the training step; unused for a custom job.
            evaluate_cpu_limit: CPU limit of the evaluate step.
            evaluate_memory_limit: Memory limit of the evaluate step.
            report_cpu_limit: CPU limit of the report step.
            report_memory_limit: Memory limit of the report step.
            prices: Overrides of the packaged price table that the run's cost is estimated
                with (an environment file's prices section: machines, accelerators, vcpu_hour,
                spot_factor); empty: the packaged prices.
        """
        ingest = ingest_data(config_yaml=config_yaml, data_source=data_source)
        configure(ingest, cpu_limit=ingest_cpu_limit, memory_limit=ingest_memory_limit)
        transform = transform_data(
            config_yaml=config_yaml,
            examples=ingest.outputs["examples"],
            feature_config_id=feature_config_id,
            beam_pipeline_args=beam_pipeline_args,
        )
        configure(
            transform,
            cpu_limit=transform_cpu_limit,
            memory_limit=transform_memory_limit,
        )
        train, evaluate = train_and_evaluate(
            train_machine=train_machine,
            limits={
                "train": (train_cpu_limit, train_memory_limit),
                "evaluate": (evaluate_cpu_limit, evaluate_memory_limit),
            },
            config_yaml=config_yaml,
            examples=ingest.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            prices=prices,
            feature_config_id=feature_config_id,
            model_config_id=model_config_id,
        )
        report = render_report(
            config_yaml=config_yaml,
            mlflow_tracking_uri=mlflow_tracking_uri,
            rank_metric=rank_metric,
            mlflow_ui_url=mlflow_ui_url,
            fail_on_unreachable=fail_on_unreachable_mlflow,
            highlight_run_id=evaluate.outputs["Output"],
            top_n=DEFAULT_TOP_N,
            detail_runs=DEFAULT_DETAIL_RUNS,
        )
        configure(report, cpu_limit=report_cpu_limit, memory_limit=report_memory_limit)
        # Ingest and transform are pure functions of their inputs and may be cached; the rest
        # write to MLflow, so a rerun must really run them.
        for task in (train, evaluate, report):
            task.set_caching_options(False)
        return report.outputs["leaderboard"]

    return training_pipeline


training_pipeline = make_training_pipeline()
