"""Run the pipeline's steps in-process from a config file, without KFP.

    python -m trainer --config configs/online_retail.yaml --work-dir .local/trainer \
        [--feature-config ID] [--model-config ID] [--tracking-uri URI] \
        [--steps ingest,transform,train,evaluate]

Each step writes to <work-dir>/<step>; a later step reuses what an earlier run left there,
so `--steps train,evaluate` retrains on the same examples.

    python -m trainer replay <backlog file or model/evaluation folder> [--tracking-uri URI]

sends what a step could not send to MLflow (its backlog); running it twice sends nothing twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from trainer import contract

STEPS = contract.TRAINER_STEPS


def replay_main(argv: list[str]) -> int:
    """``python -m trainer replay``: sends a backlog; 0 when everything was sent."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer replay",
        description="Send a tracking backlog (mlflow_backlog.jsonl) to MLflow, idempotently.",
    )
    parser.add_argument("path", help="the backlog file, or the model/evaluation folder holding it")
    parser.add_argument("--tracking-uri", default="", help="default: the URI the backlog names")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from trainer import tracking

    try:
        result = tracking.replay(args.path, args.tracking_uri)
    except FileNotFoundError as err:
        print(f"error: no backlog to replay: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # TrackingInputError, a malformed URI
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - an outage: say so, progress is recorded
        print(
            f"error: MLflow did not answer ({type(err).__name__}: {err}); what was sent is "
            "recorded, run replay again later",
            file=sys.stderr,
        )
        return 1
    tracking.update_run_info(args.path, result)
    print(
        json.dumps(
            {
                "backlog": result.backlog,
                "run_ids": result.run_ids,
                "lines_sent": result.lines_sent,
                "metric_points_sent": result.points_sent,
                "rejected": result.rejected,
                "ended_failed": result.ended,
            },
            indent=2,
        )
    )
    return 1 if result.rejected else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--work-dir", default=".local/trainer")
    parser.add_argument("--feature-config", default="", help="feature config id (first if empty)")
    parser.add_argument("--model-config", default="", help="model config id (first if empty)")
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking URI; empty: off")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps to run")
    parser.add_argument("--beam-arg", action="append", help="a Beam option (repeatable)")
    parser.add_argument(
        "--export-uri",
        default="",
        help="a bq:// source: the gs:// folder BigQuery exports the splits to (then removed)",
    )
    return parser


def _run_steps(args: argparse.Namespace, config, feature_config, steps: list[str]) -> None:
    """Runs the chosen steps in pipeline order; each imports only what it needs.

    Each step records its wall time and machine in its folder, as in the pipeline, so the
    evaluation logs the run's cost (trainer/cost).
    """
    from trainer import cost

    work = {step: os.path.join(args.work_dir, step) for step in STEPS}
    work["transform"] = os.path.join(args.work_dir, f"transform-{feature_config.id}")
    if "ingest" in steps:
        from trainer import ingest

        with cost.measure("ingest", work["ingest"]):
            ingest.run_ingest(config, work["ingest"], output_uri=args.export_uri)
    if "transform" in steps:
        from trainer import transform

        with cost.measure("transform", work["transform"]):
            transform.run_transform(
                feature_config, work["ingest"], work["transform"], beam_pipeline_args=args.beam_arg
            )
    if "train" in steps:
        from trainer import train

        with cost.measure("train", work["train"]):
            result = train.run_training(
                config,
                work["ingest"],
                work["transform"],
                work["train"],
                tracking_uri=args.tracking_uri,
                feature_config_id=args.feature_config,
                model_config_id=args.model_config,
            )
        print(f"run_id={result.run_id} best_epoch={result.best_epoch}")
    if "evaluate" in steps:
        from trainer import evaluate

        metrics = evaluate.run_evaluation(
            work["train"],
            work["ingest"],
            work["evaluate"],
            tracking_uri=args.tracking_uri,
            transform_dir=work["transform"],
        )
        print(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Runs the steps (or ``replay``); returns the exit status (2: a bad config, source or step)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:
        return replay_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from trainer import config as cfg
    from trainer import sources

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        print(
            f"error: --steps: unknown step(s) {', '.join(unknown)} (known: {', '.join(STEPS)})",
            file=sys.stderr,
        )
        return 2
    try:
        config = cfg.load_config(args.config)
        feature_config = config.feature_config(args.feature_config)
        config.model_config(args.model_config)
        if "ingest" in steps:
            sources.check_source(config)
        _run_steps(args, config, feature_config, steps)
    except cfg.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
