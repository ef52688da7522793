"""sweep_pipeline: the whole grid of an experiment in one pipeline run, ending in one report."""

from typing import NamedTuple

from kfp import dsl

from components import COMPONENT_IMAGE
from components.gate import gate_model
from components.ingest import ingest_data
from components.plan import bind_transforms, plan_sweep
from components.promote import promote_model
from components.register import register_model
from components.report import render_report
from components.select import select_best_model
from components.transform import transform_data
from pipelines.env import ModelUpload, TrainMachine
from pipelines.tasks import (
    DEFAULT_CPU_LIMIT,
    DEFAULT_MEMORY_LIMIT,
    configure,
    train_and_evaluate,
    upload_champion,
)
from trainer.contract import DEFAULT_DETAIL_RUNS, DEFAULT_RANK_METRIC, DEFAULT_TOP_N, GATE_PROMOTE

PIPELINE_NAME = "sweep-pipeline"
# Trainings at once. KFP compiles a loop's parallelism into the spec (an integer, not a
# runtime parameter), so this is set when compiling: `python -m pipelines compile --parallelism`.
DEFAULT_PARALLELISM = 2


class SweepOutputs(NamedTuple):
    """The sweep's outputs: the report, the best run's model, and the promotion gate's decision."""

    report: dsl.HTML
    best_model: dsl.Model
    gate_decision: str


def make_sweep_pipeline(
    parallelism: int = DEFAULT_PARALLELISM,
    train_machine: TrainMachine | None = None,
    model_upload: ModelUpload | None = None,
    rung_stages: int = 0,
):
    """The sweep pipeline, as compiled for Vertex AI (and run from that spec by kfp.local).

    Args:
        parallelism: Trainings at once.
        train_machine: Train each run as a Vertex custom job on this machine; None (or no
            machine type): as an ordinary step with the train_* limits.
        model_upload: Upload each new champion to the Vertex Model Registry (and deploy it)
            as this says; None (the packaged spec, kfp.local): the promotion moves the MLflow
            alias and writes what it would upload.
        rung_stages: Successive halving's rung stages before the trainings (the halving
            pipeline, pipelines/halving.py); 0: none, every training to the end.

    Returns:
        The pipeline.
    """
    name = PIPELINE_NAME
    description = (
        "Trains the grid of an experiment YAML (feature configs x model configs x seeds): "
        "one ingest, one transform per feature config, the trainings in parallel, one "
        "report over all runs, the best run's model registered as the challenger, and the "
        "promotion gate against the champion."
    )
    if rung_stages:
        from pipelines import halving

        name, description = halving.PIPELINE_NAME, halving.DESCRIPTION

    @dsl.pipeline(name=name, description=description)
    def sweep_pipeline(
        config_yaml: str,
        mlflow_tracking_uri: str,
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
    ) -> SweepOutputs:
        """Trains, evaluates and reports every run of an experiment's grid.

        Args:
            config_yaml: The experiment config (YAML text); its feature configs, model
                configs, training.seeds and grid section decide the runs.
            mlflow_tracking_uri: MLflow tracking URI (sqlite:///... locally, the Cloud Run URL
                on Vertex).
            data_source: Overrides the YAML's dataset.source (local path or gs:// URI).
            beam_pipeline_args: Beam options for the transforms; DirectRunner when empty.
            rank_metric: Metric that ranks the runs and picks the best model (default: the best
                epoch's validation recall@100; test metrics are shown, never chosen by).
            mlflow_ui_url: MLflow UI base URL for links from the report.
            fail_on_unreachable_mlflow: Fail the report step when MLflow does not answer.
            ingest_cpu_limit: CPU limit of the ingest step (whole CPUs or millicores: 4, 500m).
            ingest_memory_limit: Memory limit of the ingest step (in K, M or G: 16G, 512M).
            transform_cpu_limit: CPU limit of each transform step (the Beam launcher).
            transform_memory_limit: Memory limit of each transform step.
            train_cpu_limit: CPU limit of each training step; unused when training runs as
                a custom job (its machine type decides).
            train_memory_limit: Memory limit of each training step; unused for a custom job.
            evaluate_cpu_limit: CPU limit of each evaluate step.
            evaluate_memory_limit: Memory limit of each evaluate step.
            report_cpu_limit: CPU limit of the report, best-model, register, gate and promote
                steps.
            report_memory_limit: Memory limit of those steps.
            prices: Overrides of the packaged price table that each run's cost is estimated
                with (an environment file's prices section: machines, accelerators, vcpu_hour,
                spot_factor); empty: the packaged prices.
        """
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        ingest = ingest_data(config_yaml=config_yaml, data_source=data_source)
        configure(ingest, cpu_limit=ingest_cpu_limit, memory_limit=ingest_memory_limit)
        plan = configure(plan_sweep(config_yaml=config_yaml))
        with dsl.ParallelFor(plan.output, name="transforms") as fc_id:
            transform = transform_data(
                config_yaml=config_yaml,
                examples=ingest.outputs["examples"],
                feature_config_id=fc_id,
                beam_pipeline_args=beam_pipeline_args,
            )
            configure(
                transform,
                cpu_limit=transform_cpu_limit,
                memory_limit=transform_memory_limit,
            )
        bound = bind_transforms(
            config_yaml=config_yaml, transforms=dsl.Collected(transform.outputs["Output"])
        )
        configure(bound)
        trainings, halving_inputs = bound.output, {}
        if rung_stages:
            trainings = halving.add_rung_stages(
                rung_stages,
                parallelism=parallelism,
                train_machine=train_machine,
                train_limits=(train_cpu_limit, train_memory_limit),
                config_yaml=config_yaml,
                examples=ingest.outputs["examples"],
                mlflow_tracking_uri=mlflow_tracking_uri,
                trainings=bound.output,
                prices=prices,
            ).output
        with dsl.ParallelFor(trainings, parallelism=parallelism, name="trainings") as run:
            if rung_stages:  # the last rung: each kept trial goes on from its checkpoint
                halving_inputs = {
                    "component": halving.train_trial,
                    "rung": run.rung,
                    "resume_from": run.resume_from,
                }
            transform_graph = dsl.importer(
                artifact_uri=run.transform_uri, artifact_class=dsl.Artifact, reimport=False
            )
            train, evaluate = train_and_evaluate(
                train_machine=train_machine,
                limits={
                    "train": (train_cpu_limit, train_memory_limit),
                    "evaluate": (evaluate_cpu_limit, evaluate_memory_limit),
                },
                config_yaml=config_yaml,
                examples=ingest.outputs["examples"],
                transform_graph=transform_graph.output,
                mlflow_tracking_uri=mlflow_tracking_uri,
                prices=prices,
                feature_config_id=run.feature_config_id,
                model_config_id=run.model_config_id,
                seed=run.seed,
                **halving_inputs,
            )
        # A failed training must not cost the others their report: these run once every
        # training has ended, whatever its outcome, and read the runs from MLflow.
        report = render_report(
            config_yaml=config_yaml,
            mlflow_tracking_uri=mlflow_tracking_uri,
            rank_metric=rank_metric,
            mlflow_ui_url=mlflow_ui_url,
            fail_on_unreachable=fail_on_unreachable_mlflow,
            highlight_pipeline_job=job,
            # kfp 2.17's ignore_upstream_failure() looks up every input, defaults included.
            compare_run_ids=[],
            top_n=DEFAULT_TOP_N,
            highlight_run_id="",
            detail_runs=DEFAULT_DETAIL_RUNS,
        ).after(evaluate)
        report.ignore_upstream_failure()
        best = select_best_model(
            config_yaml=config_yaml,
            mlflow_tracking_uri=mlflow_tracking_uri,
            rank_metric=rank_metric,
            pipeline_job=job,
        ).after(evaluate)
        best.ignore_upstream_failure()
        # Only the winner is registered (alias challenger); the gate compares it with the
        # champion, and only a PROMOTE moves the alias (promote_model reads it again first).
        registered = register_model(
            config_yaml=config_yaml,
            mlflow_tracking_uri=mlflow_tracking_uri,
            best_model=best.outputs["best_model"],
            pipeline_job=job,
        )
        gate = gate_model(
            config_yaml=config_yaml,
            mlflow_tracking_uri=mlflow_tracking_uri,
            version=registered.output,
            examples=ingest.outputs["examples"],
        )
        # The report states the gate's decision (read from the challenger run's gate.* tags),
        # so it waits for it; it still runs when the gate (or anything before it) failed.
        report.after(gate)
        with dsl.If(gate.output == GATE_PROMOTE, name="on-promote"):
            promoted = promote_model(
                config_yaml=config_yaml,
                mlflow_tracking_uri=mlflow_tracking_uri,
                version=registered.output,
                examples=ingest.outputs["examples"],
                # A compile-time constant: `compile --image` / an env's image replace it too.
                serving_image=COMPONENT_IMAGE,
            )
            if model_upload is not None:
                with dsl.If(promoted.outputs["moved"] == "true", name="on-champion-moved"):
                    upload_champion(promoted, model_upload)
        decided = (report, best, registered, gate, promoted)
        for task in decided:
            configure(task, cpu_limit=report_cpu_limit, memory_limit=report_memory_limit)
        # Ingest, the plan and the transforms are pure functions of their inputs and may be
        # cached; the rest write to MLflow or read it, so a rerun must really run them.
        for task in (train, evaluate, *decided):
            task.set_caching_options(False)
        return SweepOutputs(
            report=report.outputs["report"],
            best_model=best.outputs["best_model"],
            gate_decision=gate.output,
        )

    return sweep_pipeline


sweep_pipeline = make_sweep_pipeline()
