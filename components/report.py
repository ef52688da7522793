"""render_report: the experiment report from MLflow, as HTML, Markdown and KFP Metrics."""

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def render_report(
    config_yaml: str,
    mlflow_tracking_uri: str,
    report: Output[HTML],
    dashboard: Output[HTML],
    leaderboard: Output[HTML],
    comparison: Output[HTML],
    training_curves: Output[HTML],
    heatmap: Output[HTML],
    recall_at_k: Output[HTML],
    slices: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    rank_metric: str,
    top_n: int,
    detail_runs: int,
    mlflow_ui_url: str = "",
    compare_run_ids: list = [],
    fail_on_unreachable: bool = True,
    highlight_run_id: str = "",
    highlight_pipeline_job: str = "",
):
    """Queries the experiment's MLflow runs and writes the report views.

    rank_metric, top_n and detail_runs have no defaults here: a component's body runs apart
    from this module, so the pipelines pass the contract's defaults (trainer/contract.py).

    Args:
        config_yaml: The experiment config (YAML text); names the MLflow experiment.
        mlflow_tracking_uri: MLflow tracking URI to query.
        report: All views on one page.
        dashboard: Run counts, the best run (by rank_metric) with its test recall@100, the
            mean test recall@100, the latest runs.
        leaderboard: Runs ranked by rank_metric, with lift over the baselines.
        comparison: Chosen runs side by side: metrics, params, overlaid curves.
        training_curves: Per-epoch loss, val_loss and validation recall@k of each run.
        heatmap: Feature config x model config grid of rank_metric (mean, 95% interval, n).
        recall_at_k: Recall against k per run and params against rank_metric.
        slices: Where the best run wins: test recall, lift and interval per slice (repeat or
            new targets, buyer activity, product popularity) against the baselines, and
            beyond-accuracy figures (coverage, popularity rank, tail share).
        summary: Markdown summary for the run page.
        metrics: KFP metrics of the best run, for the Vertex run-compare page.
        rank_metric: Metric that ranks the leaderboard and fills the heatmap.
        mlflow_ui_url: MLflow UI base URL; when set each run links to its page.
        compare_run_ids: Runs to compare; the top top_n runs when empty.
        top_n: How many top runs the comparison shows when no ids are given.
        fail_on_unreachable: Fail the step when MLflow does not answer (the pages say so
            either way).
        highlight_run_id: The run this pipeline trained, marked in every view.
        detail_runs: Runs (best first) with their own chart and epoch table on the
            training-curves page; 0 for every run.
        highlight_pipeline_job: A pipeline job whose runs are marked among the experiment's
            others (a sweep's own runs).
    """
    import shutil
    import tempfile

    from reporting.build import write_report
    from trainer import config as cfg
    from trainer import contract

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    result = write_report(
        mlflow_tracking_uri,
        config.experiment,
        tempfile.mkdtemp(prefix="report-"),
        rank_metric=rank_metric,
        ui_url=mlflow_ui_url,
        compare_run_ids=list(compare_run_ids),
        top_n=top_n,
        fail_on_unreachable=False,
        highlight_run_id=highlight_run_id,
        detail_runs=detail_runs,
        highlight_pipeline_job=highlight_pipeline_job,
    )
    # The HTML outputs are named after the report's views (trainer.contract.VIEWS).
    arguments = locals()
    outputs = {view: arguments[view] for view in (contract.VIEW_COMBINED, *contract.VIEWS)}
    for view, artifact in outputs.items():
        shutil.copyfile(result.pages[view], artifact.path)
        artifact.metadata["display_name"] = result.display_names[view]
    with open(summary.path, "w", encoding="utf-8") as f:
        f.write(result.markdown)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    # The pages (which say MLflow was unreachable) are written either way; then fail if asked.
    if fail_on_unreachable and not result.reachable:
        raise RuntimeError(f"MLflow at {mlflow_tracking_uri} was unreachable; see the report")
