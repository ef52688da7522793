"""Command line: compile the pipelines, run one locally with kfp.local, or submit to Vertex AI.

python -m pipelines compile --out pipeline_specs
python -m pipelines run --config configs/online_retail.yaml --tracking-uri sqlite:///...
python -m pipelines submit --config ... --project P --region R --pipeline-root gs://... \
        --tracking-uri https://mlflow-....run.app
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pipelines import PIPELINES, SPEC_DIR


def compile_all(out_dir: str) -> list[str]:
    """Compiles every pipeline to ``<out_dir>/<name>.yaml``; returns the paths."""
    from kfp import compiler

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, pipeline in PIPELINES.items():
        path = os.path.join(out_dir, f"{name}.yaml")
        compiler.Compiler().compile(pipeline, package_path=path)
        paths.append(path)
    return paths


def _pipeline_arguments(args: argparse.Namespace) -> dict:
    # Validate before anything runs; the pipeline gets the YAML text, so the run records it.
    from trainer import config as cfg

    config = cfg.load_config(args.config)
    config.feature_config(args.feature_config)
    config.model_config(args.model_config)
    return {
        "config_yaml": cfg.dump_config(config),
        "mlflow_tracking_uri": args.tracking_uri,
        "feature_config_id": args.feature_config,
        "model_config_id": args.model_config,
        "mlflow_ui_url": args.ui_url,
        "rank_metric": args.rank_metric,
    }, config


def run_local(args: argparse.Namespace) -> str:
    """Runs training_pipeline with kfp.local in this Python environment; returns the report path."""
    from kfp import local

    from pipelines.training import training_pipeline

    arguments, config = _pipeline_arguments(args)
    root = os.path.abspath(args.local_root)
    if args.tracking_uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(args.tracking_uri[len("sqlite:///") :]), exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=os.path.join(root, "pipeline_root"),
    )
    started = time.monotonic()
    task = training_pipeline(**arguments)
    report_dir = publish_report(
        os.path.dirname(task.outputs["Output"].path), os.path.join(root, "report")
    )
    print(
        f"\nPipeline finished in {time.monotonic() - started:.0f} s. "
        f"Experiment {config.experiment!r}. Report views in {report_dir}/:"
    )
    for name in sorted(os.listdir(report_dir)):
        print(f"  {name}")
    return os.path.join(report_dir, "leaderboard.html")


def publish_report(task_dir: str, out_dir: str) -> str:
    """Copies the report task's outputs to stable, browser-friendly names (<view>.html)."""
    import shutil

    from components.report import HTML_OUTPUTS

    os.makedirs(out_dir, exist_ok=True)
    for name in HTML_OUTPUTS:
        shutil.copyfile(os.path.join(task_dir, name), os.path.join(out_dir, f"{name}.html"))
    shutil.copyfile(os.path.join(task_dir, "summary"), os.path.join(out_dir, "summary.md"))
    return out_dir


def submit(args: argparse.Namespace) -> None:
    """Submits the compiled training pipeline to Vertex AI Pipelines."""
    from google.cloud import aiplatform

    arguments, _ = _pipeline_arguments(args)
    arguments["beam_pipeline_args"] = args.beam_arg or []
    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(
        display_name=f"training-pipeline-{time.strftime('%Y%m%d-%H%M%S')}",
        template_path=os.path.join(SPEC_DIR, "training_pipeline.yaml"),
        pipeline_root=args.pipeline_root,
        parameter_values=arguments,
        enable_caching=True,
    )
    job.submit(service_account=args.service_account or None)
    print(f"submitted: {job.resource_name}")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI")
    parser.add_argument("--feature-config", default="", help="feature config id (first if empty)")
    parser.add_argument("--model-config", default="", help="model config id (first if empty)")
    parser.add_argument("--ui-url", default="", help="MLflow UI base URL for report links")
    parser.add_argument("--rank-metric", default="test_recall_at_100")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_compile = sub.add_parser("compile", help="compile pipelines to YAML")
    p_compile.add_argument("--out", default=SPEC_DIR)
    p_run = sub.add_parser("run", help="run training_pipeline locally (kfp.local)")
    _add_run_args(p_run)
    p_run.add_argument("--local-root", default=".local", help="folder for local outputs")
    p_submit = sub.add_parser("submit", help="submit training_pipeline to Vertex AI")
    _add_run_args(p_submit)
    p_submit.add_argument("--project", required=True)
    p_submit.add_argument("--region", required=True)
    p_submit.add_argument("--pipeline-root", required=True, help="gs:// folder for artifacts")
    p_submit.add_argument("--service-account", default="")
    p_submit.add_argument("--beam-arg", action="append", help="a Beam option (repeatable)")
    args = parser.parse_args(argv)

    if args.command == "compile":
        for path in compile_all(args.out):
            print(f"wrote {path}")
        return 0
    if args.command == "submit":
        submit(args)
        return 0
    from trainer.config import ConfigError

    try:
        report = run_local(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    store = args.tracking_uri
    print(
        "Open the MLflow UI on this store with:\n"
        f"  .venv/bin/mlflow ui --backend-store-uri {store} --port 5000   (or: make mlflow-ui)"
    )
    print(f"tracking_uri={store}")
    print(f"report={report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
