"""Command line: compile the pipelines, run one locally with kfp.local, or submit to Vertex AI.

python -m pipelines compile --out pipeline_specs [--parallelism N]
python -m pipelines run --config configs/online_retail.yaml --tracking-uri sqlite:///... \
        [--pipeline sweep|training]
python -m pipelines submit --config ... --project P --region R --pipeline-root gs://... \
        --tracking-uri https://mlflow-....run.app [--pipeline sweep|training]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pipelines import PIPELINE_CHOICES, PIPELINES, SPEC_DIR, make_sweep_pipeline
from trainer.contract import DEFAULT_RANK_METRIC, SUMMARY_FILE, VIEW_COMBINED, VIEWS


def compile_all(out_dir: str, parallelism: int | None = None) -> list[str]:
    """Compiles every pipeline to ``<out_dir>/<name>.yaml``; returns the paths."""
    from kfp import compiler

    pipelines = dict(PIPELINES)
    if parallelism is not None:
        pipelines["sweep_pipeline"] = make_sweep_pipeline(parallelism)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, pipeline in pipelines.items():
        path = os.path.join(out_dir, f"{name}.yaml")
        compiler.Compiler().compile(pipeline, package_path=path)
        paths.append(path)
    return paths


def pipeline_arguments(config, args: argparse.Namespace) -> dict:
    """The pipeline's arguments from a validated config and the command line."""
    from trainer import config as cfg

    arguments = {
        "config_yaml": cfg.dump_config(config),
        "mlflow_tracking_uri": args.tracking_uri,
        "mlflow_ui_url": args.ui_url,
        "rank_metric": args.rank_metric,
    }
    if args.pipeline == "training":
        config.feature_config(args.feature_config)
        config.model_config(args.model_config)
        arguments.update(feature_config_id=args.feature_config, model_config_id=args.model_config)
    return arguments


def run_local(args: argparse.Namespace) -> tuple[str, bool]:
    """Runs a pipeline with kfp.local in this Python environment.

    Returns:
        (the leaderboard page, whether every task succeeded).
    """
    from kfp import local

    from trainer import config as cfg
    from trainer import preflight

    config = cfg.load_config(args.config)
    arguments = pipeline_arguments(config, args)
    preflight.check_source(config)
    root = os.path.abspath(args.local_root)
    if args.tracking_uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(args.tracking_uri[len("sqlite:///") :]), exist_ok=True)
    pipeline_root = os.path.join(root, "pipeline_root")
    # A failed training must not hide the report of the others: run to the end, then say so.
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=pipeline_root,
        raise_on_error=False,
    )
    started = time.time()
    pipeline = PIPELINES[PIPELINE_CHOICES[args.pipeline]]
    outputs = pipeline(**arguments).outputs
    ok = bool(outputs)
    report_dir = publish_report(
        _report_task_dir(pipeline_root, started), os.path.join(root, "report")
    )
    print(
        f"\nPipeline {'finished' if ok else 'FAILED (see the log above)'} in "
        f"{time.time() - started:.0f} s. Experiment {config.experiment!r}. "
        f"Report views in {report_dir}/:"
    )
    for name in sorted(os.listdir(report_dir)):
        print(f"  {name}")
    return os.path.join(report_dir, "leaderboard.html"), ok


def _report_task_dir(pipeline_root: str, started: float) -> str:
    """The render-report task folder of the pipeline run that started at ``started``."""
    runs = [
        os.path.join(pipeline_root, d)
        for d in os.listdir(pipeline_root)
        if os.path.getmtime(os.path.join(pipeline_root, d)) >= started - 1
    ]
    for run in sorted(runs, key=os.path.getmtime, reverse=True):
        task_dir = os.path.join(run, "render-report")
        if os.path.isdir(task_dir):
            return task_dir
    raise FileNotFoundError(f"no render-report output under {pipeline_root} from this run")


def publish_report(task_dir: str, out_dir: str) -> str:
    """Copies the report task's outputs to stable, browser-friendly names (<view>.html)."""
    import shutil

    os.makedirs(out_dir, exist_ok=True)
    for name in (VIEW_COMBINED, *VIEWS):
        shutil.copyfile(os.path.join(task_dir, name), os.path.join(out_dir, f"{name}.html"))
    shutil.copyfile(os.path.join(task_dir, "summary"), os.path.join(out_dir, SUMMARY_FILE))
    return out_dir


def submit(args: argparse.Namespace) -> None:
    """Submits a compiled pipeline to Vertex AI Pipelines."""
    from google.cloud import aiplatform

    from trainer import config as cfg

    arguments = pipeline_arguments(cfg.load_config(args.config), args)
    arguments["beam_pipeline_args"] = args.beam_arg or []
    spec = PIPELINE_CHOICES[args.pipeline]
    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(
        display_name=f"{spec.replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S')}",
        template_path=os.path.join(
            os.path.dirname(os.path.dirname(__file__)), SPEC_DIR, f"{spec}.yaml"
        ),
        pipeline_root=args.pipeline_root,
        parameter_values=arguments,
    )
    job.submit(service_account=args.service_account or None)
    print(f"submitted: {job.resource_name}")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI")
    parser.add_argument(
        "--pipeline",
        choices=sorted(PIPELINE_CHOICES),
        default="sweep",
        help="sweep: the config's whole grid (default); training: one pair",
    )
    parser.add_argument("--feature-config", default="", help="training: feature config id")
    parser.add_argument("--model-config", default="", help="training: model config id")
    parser.add_argument("--ui-url", default="", help="MLflow UI base URL for report links")
    parser.add_argument("--rank-metric", default=DEFAULT_RANK_METRIC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_compile = sub.add_parser("compile", help="compile pipelines to YAML")
    p_compile.add_argument("--out", default=SPEC_DIR)
    p_compile.add_argument("--parallelism", type=int, default=None, help="sweep trainings at once")
    p_run = sub.add_parser("run", help="run a pipeline locally (kfp.local)")
    _add_run_args(p_run)
    p_run.add_argument("--local-root", default=".local", help="folder for local outputs")
    p_submit = sub.add_parser("submit", help="submit a pipeline to Vertex AI")
    _add_run_args(p_submit)
    p_submit.add_argument("--project", required=True)
    p_submit.add_argument("--region", required=True)
    p_submit.add_argument("--pipeline-root", required=True, help="gs:// folder for artifacts")
    p_submit.add_argument("--service-account", default="")
    p_submit.add_argument("--beam-arg", action="append", help="a Beam option (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from trainer.config import ConfigError

    try:
        if args.command == "compile":
            for path in compile_all(args.out, args.parallelism):
                print(f"wrote {path}")
            return 0
        if args.command == "submit":
            submit(args)
            return 0
        report, ok = run_local(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        "Open the MLflow UI on this store with:\n"
        f"  .venv/bin/mlflow ui --backend-store-uri {args.tracking_uri} --port 5000   "
        "(or: make mlflow-ui)"
    )
    print(f"tracking_uri={args.tracking_uri}")
    print(f"report={report}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
