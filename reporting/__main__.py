"""``python -m reporting``: render the report from any MLflow store, no pipeline needed."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from trainer import contract


def _lost_options(p: argparse.ArgumentParser) -> None:
    """Lost runs: RUNNING runs whose heartbeat stopped (their process died)."""
    p.add_argument(
        "--lost-after-minutes",
        type=float,
        default=contract.LOST_AFTER_S / 60,
        metavar="MIN",
        help="A RUNNING run without a heartbeat for longer is lost (default: %(default)g)",
    )
    p.add_argument(
        "--end-lost",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="End lost runs FAILED in MLflow (--no-end-lost: read only, still shown as lost)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m reporting",
        description="Render the experiment report (HTML views, summary.md) from an MLflow store.",
    )
    p.add_argument(
        "--tracking-uri", required=True, help="MLflow tracking URI (http(s)://, sqlite:///...)"
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument(
        "--out", required=True, help="Output folder for the HTML pages and the Markdown summary"
    )
    p.add_argument(
        "--rank-metric",
        default=contract.DEFAULT_RANK_METRIC,
        help="Metric ranking the leaderboard and filling the heatmap (default: %(default)s)",
    )
    p.add_argument("--ui-url", default="", help="MLflow UI base URL, to link each run")
    p.add_argument(
        "--compare-runs",
        nargs="*",
        default=None,
        metavar="RUN_ID",
        help="Run ids to compare (space or comma separated); default: the top N",
    )
    p.add_argument(
        "--top-n",
        type=int,
        default=contract.DEFAULT_TOP_N,
        help="Runs to compare when no ids are given (default: %(default)s)",
    )
    p.add_argument("--highlight-run", default="", help="Run id to mark as 'this run'")
    p.add_argument(
        "--highlight-job",
        default="",
        metavar="PIPELINE_JOB",
        help="Pipeline job whose runs (tag kfp.pipeline_job) are marked and counted",
    )
    p.add_argument(
        "--detail-runs",
        type=int,
        default=contract.DEFAULT_DETAIL_RUNS,
        metavar="N",
        help="Runs (best first) with their own chart and epoch table on the training-curves "
        "page; 0 = every run (default: %(default)s)",
    )
    p.add_argument(
        "--fail-on-unreachable",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Exit non-zero (after writing a page saying so) when MLflow is unreachable",
    )
    _lost_options(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, render the report, print where it went.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit status: 0 on success, 2 when MLflow was unreachable and that is fatal.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.detail_runs < 0:
        parser.error(
            f"--detail-runs: expected 0 (every run) or a positive count, got {args.detail_runs}"
        )
    if not args.lost_after_minutes > 0:
        parser.error(f"--lost-after-minutes: expected minutes > 0, got {args.lost_after_minutes}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from reporting.build import ReportUnreachableError, write_report

    ids = [i for chunk in (args.compare_runs or []) for i in chunk.split(",") if i.strip()]
    try:
        result = write_report(
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            out_dir=args.out,
            rank_metric=args.rank_metric,
            ui_url=args.ui_url,
            compare_run_ids=[i.strip() for i in ids] or None,
            top_n=args.top_n,
            fail_on_unreachable=args.fail_on_unreachable,
            highlight_run_id=args.highlight_run,
            highlight_pipeline_job=args.highlight_job,
            detail_runs=args.detail_runs,
            end_lost=args.end_lost,
            lost_after_s=args.lost_after_minutes * 60,
        )
    except ReportUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"wrote {exc.result.pages[contract.VIEW_COMBINED]}", file=sys.stderr)
        return 2
    print(result.markdown)
    for view, path in result.pages.items():
        print(f"{result.display_names[view]:<22} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
