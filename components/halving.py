"""advance_rung and train_trial: the steps of successive halving (pipelines/halving.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def advance_rung(
    config_yaml: str,
    mlflow_tracking_uri: str,
    stage: int,
    stages: int,
    trainings: list = [],
    pipeline_job: str = "",
    prices: dict = {},
) -> list:
    """Lists what the next rung stage trains; after a rung, keeps its best trials.

    Args:
        config_yaml: The experiment config (YAML text); its search section makes the rungs.
        mlflow_tracking_uri: MLflow tracking URI: the rung's results are read from the
            trials' runs, and each judged run is tagged continued or stopped (with why).
        stage: The rung stage just done (0: none yet).
        stages: The rung stages the pipeline was compiled with, the final one included.
        trainings: Every training of the sweep with its transform URI (bind_transforms); a
            default only so that this step runs after a failed training.
        pipeline_job: This pipeline job (its runs are the trials').
        prices: Overrides of the packaged price table (an environment file's prices section),
            for the cost logged on the stopped trials' runs.

    Returns:
        The next stage's trainings, each with its rung and the model folder it continues
        from; empty when that stage is unused.
    """
    from trainer import config as cfg
    from trainer import sweep

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    return sweep.advance(
        config, trainings, stage, stages, mlflow_tracking_uri, pipeline_job, prices=prices
    )


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_trial(
    config_yaml: str,
    examples: Input[Dataset],
    transform_graph: Input[Artifact],
    model: Output[Model],
    mlflow_tracking_uri: str,
    feature_config_id: str = "",
    model_config_id: str = "",
    seed: int = -1,
    rung: int = 0,
    resume_from: str = "",
    pipeline_job: str = "",
    pipeline_task: str = "",
) -> str:
    """Trains one trial through a halving rung, going on from the previous rung's checkpoint.

    Args:
        config_yaml: The experiment config (YAML text).
        examples: The ingest output (catalog and raw splits for validation recall).
        transform_graph: The transform output of the feature config.
        model: Output folder: the rung's checkpoint (the last rung: the serving model, as
            train_model writes it).
        mlflow_tracking_uri: MLflow tracking URI; the trial's one run goes on rung by rung.
        feature_config_id: Which feature config.
        model_config_id: Which model config.
        seed: Random seed; negative: the config's training.seed.
        rung: The rung (1-based; 0: a plain training to training.epochs).
        resume_from: URI of the previous rung's model folder ("" for the first rung).
        pipeline_job: KFP pipeline job name; with the configs and the seed it keys the run.
        pipeline_task: KFP task name, tagged on the MLflow run.
    """
    from trainer import config as cfg
    from trainer import contract, cost, sweep, train

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    # Its wall time and machine beside the rung's model, with the earlier rungs' time added:
    # the last rung's record (read by evaluate) covers the whole trial, a stopped trial's
    # record is logged on its run by the next advance_rung.
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
        halving_rung=rung,
        resume_from=resume_from,
    )
    timer.stop(model.path, carried_from=resume_from)
    model.metadata.update(
        {
            "mlflow_run_id": result.run_id or "",
            "best_epoch": result.best_epoch,
            "rung": rung,
            "tracking_degraded": result.tracking_degraded or "",
        }
    )
    return result.run_id or ""
