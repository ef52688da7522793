"""Command line: compile the pipelines, run one locally with kfp.local, or submit to Vertex AI.

python -m pipelines compile [--out pipeline_specs] [--parallelism N] [--rungs N] [--image REF] \
        [--env NAME]
python -m pipelines run --config configs/online_retail.yaml --tracking-uri sqlite:///... \
        [--pipeline sweep|halving|training]
python -m pipelines submit --env NAME --config configs/online_retail.yaml \
        [--pipeline sweep|halving|training] [--wait] [--enable-caching|--disable-caching] \
        [--no-upload-data]
python -m pipelines promote --config FILE --tracking-uri URI (--version N | --run-id ID | \
        --rollback N) [--examples DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import os
import sys
import tempfile
import time

from pipelines import (
    DEFAULT_RUNG_STAGES,
    PIPELINE_CHOICES,
    PIPELINES,
    SPEC_DIR,
    build_pipeline,
    promote,
    vertex,
)
from pipelines.env import EnvError, TrainMachine, env_path, load_env
from pipelines.vertex import JobFailedError, SubmitError
from trainer.contract import DEFAULT_RANK_METRIC, SUMMARY_FILE, VIEW_COMBINED, VIEWS

# Where `compile --image/--env` writes: pipeline_specs/ holds the packaged specs only (a test
# compares them with a fresh compile).
VARIANT_SPEC_DIR = os.path.join(".local", "pipeline_specs")


def compile_all(
    out_dir: str,
    parallelism: int | None = None,
    train_machine: TrainMachine | None = None,
    image: str = "",
    names: tuple[str, ...] = tuple(PIPELINES),
    model_upload=None,
    rung_stages: int | None = None,
) -> list[str]:
    """Compiles pipelines to ``<out_dir>/<name>.yaml``; returns the paths.

    Args:
        out_dir: The folder to write to (created).
        parallelism: The sweep's trainings at once; its default when None.
        train_machine: Train as a Vertex custom job on this machine; in-pipeline when None.
        image: Run every step in this image (``components.with_image``); the default when
            empty.
        names: Which pipelines (spec names); all by default.
        model_upload: The env's ``ModelUpload`` (the sweep uploads new champions to Vertex).
        rung_stages: The halving pipeline's rung stages; its default when None.

    Returns:
        The paths written.
    """
    from kfp import compiler

    from components import with_image

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in names:
        pipeline = build_pipeline(
            name,
            parallelism=parallelism,
            train_machine=train_machine,
            model_upload=model_upload,
            rung_stages=rung_stages,
        )
        path = os.path.join(out_dir, f"{name}.yaml")
        compiler.Compiler().compile(pipeline, package_path=path)
        if image:
            with open(path, encoding="utf-8") as f:
                text = with_image(f.read(), image)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        paths.append(path)
    return paths


def _compile(args: argparse.Namespace) -> list[str]:
    """``compile``: the packaged specs, or with --env / --image the specs that env would run."""
    variant = bool(args.env or args.image)
    out = args.out or (VARIANT_SPEC_DIR if variant else SPEC_DIR)
    if variant and os.path.abspath(out) == os.path.abspath(SPEC_DIR):
        raise SubmitError(
            f"--out {out}: {SPEC_DIR}/ holds the packaged specs only (a test compares them "
            f"with a fresh compile); write an --env / --image variant elsewhere"
        )
    options, image = {}, args.image or ""
    if args.env:
        env = load_env(env_path(args.env))
        options = env.compile_options()
        image = image or env.image
    return compile_all(
        out,
        args.parallelism,
        options.get("train_machine"),
        image,
        model_upload=options.get("model_upload"),
        rung_stages=args.rungs,
    )


def pipeline_arguments(config, args: argparse.Namespace) -> dict:
    """The pipeline's arguments from a validated config and the command line."""
    from trainer import config as cfg

    arguments = {
        "config_yaml": cfg.dump_config(config),
        "mlflow_tracking_uri": args.tracking_uri,
        "mlflow_ui_url": args.ui_url,
        "rank_metric": args.rank_metric,
    }
    _check_strategy(config, args)
    if args.pipeline == "training":
        config.feature_config(args.feature_config)
        config.model_config(args.model_config)
        arguments.update(feature_config_id=args.feature_config, model_config_id=args.model_config)
    return arguments


def _check_strategy(config, args: argparse.Namespace) -> None:
    """A halving config runs in the halving pipeline, with rung stages enough for it."""
    from trainer import config as cfg
    from trainer import sweep

    halving = config.search.strategy == cfg.SearchStrategy.HALVING
    if halving and args.pipeline == "sweep":
        raise cfg.ConfigError(
            config.source,
            "search.strategy",
            "halving trains in rungs: run it with --pipeline halving (the sweep pipeline "
            "would train every trial to the end)",
        )
    if args.pipeline == "halving":
        try:
            sweep.stage_rungs(config, getattr(args, "rungs", None) or DEFAULT_RUNG_STAGES)
        except sweep.RungStagesError as err:
            raise cfg.ConfigError(config.source, "search", str(err)) from None


def run_local(args: argparse.Namespace) -> tuple[str, bool]:
    """Runs a pipeline with kfp.local in this Python environment.

    Returns:
        (the leaderboard page, whether every task succeeded).
    """
    from kfp import local

    from trainer import config as cfg
    from trainer import sources
    from trainer.tracking import open_client

    config = cfg.load_config(args.config)
    arguments = pipeline_arguments(config, args)
    sources.check_source(config)
    root = os.path.abspath(args.local_root)
    open_client(args.tracking_uri)  # an embedded store is created once, before the steps
    pipeline_root = os.path.join(root, "pipeline_root")
    # A failed training must not hide the report of the others: run to the end, then say so.
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=pipeline_root,
        raise_on_error=False,
    )
    started = time.time()
    pipeline = local_pipeline(
        PIPELINE_CHOICES[args.pipeline], args.parallelism, root, rung_stages=args.rungs
    )
    # kfp.local indents task logs by swapping builtins.print; with parallel loop iterations
    # the swaps interleave and the indentation outlives the run. Put print back after it.
    print_function = builtins.print
    try:
        outputs = pipeline(**arguments).outputs
    finally:
        builtins.print = print_function
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


def local_pipeline(
    name: str, parallelism: int | None, local_root: str, rung_stages: int | None = None
):
    """The pipeline kfp.local runs: the spec compiled as for Vertex, loaded back from its YAML.

    The same compile as ``compile`` / ``submit`` (retries and resource limits included), so
    what runs on a laptop is the YAML Vertex gets, not a pipeline built apart for local use.
    kfp.local honours the retry policies and ignores the resource limits (it warns): every step
    runs as a subprocess of this machine. Only the image differs, which a subprocess runner
    does not use, and the retries' waits: kfp.local sleeps a retry's backoff in the run
    (kfp/local/orchestrator/task_executor.py), 2 minutes before a training's retry, which
    waits out nothing on one machine (the backoff is for a cloud's transient quota, preemption
    and network), so the loaded copy retries as often without waiting. The compiled spec is
    kept in ``<local_root>/run_spec/<name>.yaml``, the copy run beside it as ``.local.yaml``.
    """
    import yaml
    from kfp import components

    (path,) = compile_all(
        os.path.join(local_root, "run_spec"),
        parallelism=parallelism,
        names=(name,),
        rung_stages=rung_stages,
    )
    with open(path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    _without_backoff(spec)
    local_path = path.removesuffix(".yaml") + ".local.yaml"
    with open(local_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return components.load_component_from_file(local_path)


def _without_backoff(node) -> None:
    """Sets every ``retryPolicy``'s backoff to 0 s in a compiled spec (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "retryPolicy" and isinstance(value, dict):
                value["backoffDuration"] = "0s"
            else:
                _without_backoff(value)
    elif isinstance(node, list):
        for item in node:
            _without_backoff(item)


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


def _stage_source(config, env, args: argparse.Namespace):
    """Checks the data source; uploads a local one. Returns (config, ``data_source`` value).

    The config sent names the uploaded copy, so no path of the submitter's disk reaches Vertex.
    """
    from trainer import sources

    source = config.dataset.source
    if source.startswith(sources.CLOUD_PREFIXES):
        return config, ""
    sources.check_source(config)
    if args.no_upload_data:
        raise SubmitError(
            f"{config.source}: dataset.source: {source} is on this machine, which no Vertex "
            f"worker can read; submit without --no-upload-data to upload it under "
            f"{env.pipeline_root}/data/, or set a gs:// source"
        )
    uri = vertex.stage_data_source(source, env.pipeline_root)
    print(f"staged:    {source} -> {uri}", flush=True)
    staged = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, source=uri))
    return staged, uri


def submit(args: argparse.Namespace) -> str:
    """Submits a pipeline to Vertex AI Pipelines in an environment; returns the job's name.

    The config and the environment are validated before anything else; a local data source
    is checked and uploaded under the pipeline root; with the environment's training machine
    or a ``--parallelism``, the pipeline is compiled again into a temporary spec (both are
    compile-time in KFP).

    Args:
        args: The parsed ``submit`` command line.

    Returns:
        The job's resource name.
    """
    from trainer import config as cfg

    config = cfg.load_config(args.config)
    env = load_env(env_path(args.env))
    name = PIPELINE_CHOICES[args.pipeline]
    # Also checks the training pipeline's config ids, before anything is uploaded.
    arguments = pipeline_arguments(config, _with_tracking(args, env))
    config, data_source = _stage_source(config, env, args)
    if data_source:
        arguments.update(config_yaml=cfg.dump_config(config), data_source=data_source)
    options = env.compile_options()
    with tempfile.TemporaryDirectory(prefix="b2b-recs-compile-") as folder:
        template = ""
        compiled = (args.parallelism, args.rungs)
        if any(v is not None for v in (*options.values(), *compiled)):
            (template,) = compile_all(
                folder, args.parallelism, names=(name,), rung_stages=args.rungs, **options
            )
        request = vertex.build_job_request(
            env,
            name,
            arguments,
            template_path=template,
            enable_caching=args.enable_caching,
        )
    return vertex.submit(request, wait=args.wait)


def _with_tracking(args: argparse.Namespace, env) -> argparse.Namespace:
    """The command line with the environment's MLflow server, as ``pipeline_arguments`` reads."""
    return argparse.Namespace(
        **vars(args), tracking_uri=env.mlflow.tracking_uri, ui_url=env.mlflow.ui_url
    )


def _add_run_args(parser: argparse.ArgumentParser, tracking: bool = True) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML")
    if tracking:
        parser.add_argument("--tracking-uri", required=True, help="MLflow tracking URI")
        parser.add_argument("--ui-url", default="", help="MLflow UI base URL for report links")
    parser.add_argument(
        "--pipeline",
        choices=sorted(PIPELINE_CHOICES),
        default="sweep",
        help="sweep: the config's whole grid (default); halving: its trials in rungs "
        "(search.strategy halving); training: one pair",
    )
    parser.add_argument("--feature-config", default="", help="training: feature config id")
    parser.add_argument("--model-config", default="", help="training: model config id")
    parser.add_argument("--rank-metric", default=DEFAULT_RANK_METRIC)
    parser.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="sweep: trainings at once (compiled into the spec; default 2)",
    )
    parser.add_argument(
        "--rungs",
        type=int,
        default=None,
        help=f"halving: rung stages (compiled into the spec; default {DEFAULT_RUNG_STAGES})",
    )


def _add_submit_args(parser: argparse.ArgumentParser) -> None:
    _add_run_args(parser, tracking=False)
    parser.add_argument(
        "--env", required=True, help="environment: NAME (configs/env/NAME.yaml) or a path"
    )
    parser.add_argument("--wait", action="store_true", help="follow the job to its end state")
    caching = parser.add_mutually_exclusive_group()
    caching.add_argument(
        "--enable-caching",
        dest="enable_caching",
        action="store_const",
        const=True,
        help="reuse every step's cached result (default: each step's own setting)",
    )
    caching.add_argument(
        "--disable-caching",
        dest="enable_caching",
        action="store_const",
        const=False,
        help="run every step again",
    )
    parser.add_argument(
        "--no-upload-data",
        action="store_true",
        help="refuse a local dataset.source instead of uploading it under the pipeline root",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_compile = sub.add_parser("compile", help="compile pipelines to YAML")
    p_compile.add_argument(
        "--out",
        default=None,
        help=f"folder (default: {SPEC_DIR}; {VARIANT_SPEC_DIR} with --image or --env)",
    )
    p_compile.add_argument("--parallelism", type=int, default=None, help="sweep trainings at once")
    p_compile.add_argument(
        "--rungs", type=int, default=None, help="halving pipeline: rung stages (default 4)"
    )
    p_compile.add_argument("--image", default="", help="run every step in this image reference")
    p_compile.add_argument(
        "--env", default="", help="compile what this environment runs (training machine, image)"
    )
    p_run = sub.add_parser("run", help="run a pipeline locally (kfp.local)")
    _add_run_args(p_run)
    p_run.add_argument("--local-root", default=".local", help="folder for local outputs")
    p_submit = sub.add_parser("submit", help="submit a pipeline to Vertex AI")
    _add_submit_args(p_submit)
    p_promote = sub.add_parser("promote", help="gate and promote a version by hand; rollback")
    promote.add_arguments(p_promote)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2: a user error, said in one line)."""
    args = _parser().parse_args(argv)
    from trainer.config import ConfigError

    if args.command == "promote":
        return _promote_main(args)
    try:
        if args.command == "compile":
            for path in _compile(args):
                print(f"wrote {path}")
            return 0
        if args.command == "submit":
            return _submit_main(args)
        report, ok = run_local(args)
    except (ConfigError, EnvError, SubmitError) as err:
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


def _promote_main(args: argparse.Namespace) -> int:
    """``promote`` with a bad config or a registry problem said in one line (status 2)."""
    from trainer.config import ConfigError
    from trainer.registry import RegistryError

    try:
        return promote.run(args)
    except (ConfigError, RegistryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _submit_main(args: argparse.Namespace) -> int:
    """``submit`` with the Google errors a user can fix said in one line."""
    from google.auth.exceptions import DefaultCredentialsError

    try:
        submit(args)
    except DefaultCredentialsError as err:
        raise SubmitError(
            f"no Google credentials ({err.args[0].splitlines()[0] if err.args else err}); "
            "run: gcloud auth application-default login"
        ) from err
    except JobFailedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
