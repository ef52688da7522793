"""evaluate_model: exact test recall@k of the model and the baselines (Evaluator)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate_model(
    examples: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Metrics],
    mlflow_tracking_uri: str,
    transform_graph: Input[Artifact] = None,
    prices: dict = {},
) -> str:
    """Measures test recall@10/50/100 over the full catalog; logs it to the training run.

    Also logs the run's cost: each step's wall time and machine (ingest, transform, train: the
    records in their outputs; this step's own) and the estimate from the price table.

    Args:
        examples: The ingest output (test split, catalog, history for the baselines).
        model: The train output (serving model and its MLflow run).
        evaluation: KFP metrics of the model and of each baseline.
        mlflow_tracking_uri: MLflow tracking URI (the run was created by train_model).
        transform_graph: The transform output the model was trained on (its step record).
        prices: Overrides of the packaged price table (an environment file's prices section).
    """
    import os

    from trainer import evaluate, tracking

    metrics = evaluate.run_evaluation(
        model.path,
        examples.path,
        os.path.dirname(evaluation.path),
        tracking_uri=mlflow_tracking_uri,
        transform_dir=transform_graph.path if transform_graph else "",
        prices=prices,
    )
    for name, value in metrics.items():
        evaluation.log_metric(name, value)
    return tracking.read_run_info(model.path)["run_id"] or ""
