"""render_report's component body (via .python_func) on a real SQLite MLflow store."""

import pytest
from kfp import dsl
from mlflow.tracking import MlflowClient

from components.report import render_report
from trainer import config as cfg
from trainer import contract

HTML_OUTPUTS = (contract.VIEW_COMBINED, *contract.VIEWS)
# What the pipelines pass (the component itself has no defaults for these).
DEFAULTS = {
    "rank_metric": contract.DEFAULT_RANK_METRIC,
    "top_n": contract.DEFAULT_TOP_N,
    "detail_runs": contract.DEFAULT_DETAIL_RUNS,
}
CONFIG = cfg.dump_config(cfg.load_config("configs/online_retail.yaml"))


def _outputs(tmp_path):
    html = {name: dsl.HTML(name=name, uri=str(tmp_path / name)) for name in HTML_OUTPUTS}
    return {
        **html,
        "summary": dsl.Markdown(name="summary", uri=str(tmp_path / "summary")),
        "metrics": dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics")),
    }


def test_html_outputs_are_the_report_views():
    outputs = render_report.component_spec.outputs
    html = tuple(name for name, spec in outputs.items() if spec.type.startswith("system.HTML"))
    assert html == HTML_OUTPUTS


def test_component_writes_every_view_the_summary_and_metrics(tmp_path, tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("online-retail-two-tower")
    run = client.create_run(experiment, run_name="history-logq-1")
    client.log_metric(run.info.run_id, contract.test_recall_key(100), 0.35)
    client.log_metric(run.info.run_id, contract.DEFAULT_RANK_METRIC, 0.3)
    client.log_metric(run.info.run_id, contract.METRIC_LOSS, 2.0, step=1)
    client.set_terminated(run.info.run_id)
    outputs = _outputs(tmp_path)
    render_report.python_func(
        **DEFAULTS,
        config_yaml=CONFIG,
        mlflow_tracking_uri=tracking_uri,
        highlight_run_id=run.info.run_id,
        **outputs,
    )
    for name in HTML_OUTPUTS:
        page = (tmp_path / name).read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>")
        if name in ("report", "dashboard", "leaderboard", "comparison", "training_curves"):
            assert "history-logq-1" in page, name
        assert outputs[name].metadata["display_name"]
    assert "history-logq-1" in (tmp_path / "summary").read_text(encoding="utf-8")
    assert outputs["metrics"].metadata["run_count"] == 1.0
    assert outputs["metrics"].metadata["best_run_test_recall_at_100"] == pytest.approx(0.35)


def test_unreachable_mlflow_writes_the_pages_then_fails_when_asked(tmp_path):
    outputs = _outputs(tmp_path)
    with pytest.raises(RuntimeError, match="unreachable"):
        render_report.python_func(
            **DEFAULTS,
            config_yaml=CONFIG,
            mlflow_tracking_uri="http://127.0.0.1:9",
            fail_on_unreachable=True,
            **outputs,
        )
    assert "unreachable" in (tmp_path / "leaderboard").read_text(encoding="utf-8")
    outputs = _outputs(tmp_path / "again")
    (tmp_path / "again").mkdir()
    render_report.python_func(
        **DEFAULTS,
        config_yaml=CONFIG,
        mlflow_tracking_uri="http://127.0.0.1:9",
        fail_on_unreachable=False,
        **outputs,
    )
    assert outputs["metrics"].metadata["mlflow_reachable"] == 0.0


def test_the_pipeline_job_reaches_the_report(tmp_path, tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("online-retail-two-tower")
    for name, job in (("mine", "job-1"), ("other", "job-0")):
        run = client.create_run(experiment, run_name=name, tags={contract.TAG_PIPELINE_JOB: job})
        client.log_metric(run.info.run_id, contract.test_recall_key(100), 0.3)
        client.set_terminated(run.info.run_id)
    outputs = _outputs(tmp_path)
    render_report.python_func(
        **DEFAULTS,
        config_yaml=CONFIG,
        mlflow_tracking_uri=tracking_uri,
        highlight_pipeline_job="job-1",
        **outputs,
    )
    assert outputs["metrics"].metadata["job_runs"] == 1.0
    assert "this job" in (tmp_path / "leaderboard").read_text(encoding="utf-8")
