"""Run the pipeline's steps in-process from a config file, without KFP.

    python -m trainer --config configs/online_retail.yaml --work-dir .local/trainer \
        [--feature-config ID] [--model-config ID] [--tracking-uri URI] \
        [--steps ingest,transform,train,evaluate]

Each step writes to <work-dir>/<step>; a later step reuses what an earlier run left there,
so `--steps train,evaluate` retrains on the same examples.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

STEPS = ("ingest", "transform", "train", "evaluate")


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
    return parser


def _run_steps(args: argparse.Namespace, config, feature_config, steps: list[str]) -> None:
    """Runs the chosen steps in pipeline order; each imports only what it needs."""
    work = {step: os.path.join(args.work_dir, step) for step in STEPS}
    work["transform"] = os.path.join(args.work_dir, f"transform-{feature_config.id}")
    if "ingest" in steps:
        from trainer import ingest

        ingest.run_ingest(config, work["ingest"])
    if "transform" in steps:
        from trainer import transform

        transform.run_transform(
            feature_config, work["ingest"], work["transform"], beam_pipeline_args=args.beam_arg
        )
    if "train" in steps:
        from trainer import train

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
            work["train"], work["ingest"], work["evaluate"], tracking_uri=args.tracking_uri
        )
        print(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Runs the steps; returns the exit status (2: a bad config or step name)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from trainer import config as cfg

    try:
        config = cfg.load_config(args.config)
        feature_config = config.feature_config(args.feature_config)
        config.model_config(args.model_config)
    except cfg.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        print(
            f"error: --steps: unknown step(s) {', '.join(unknown)} (known: {', '.join(STEPS)})",
            file=sys.stderr,
        )
        return 2
    _run_steps(args, config, feature_config, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
