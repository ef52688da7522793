"""The report's Markdown summary (KFP Markdown artifact) and KFP metrics, from the view model."""

from __future__ import annotations

import re
import urllib.parse

from reporting import promotion, ties
from reporting.metric import fmt, pct, present
from reporting.report_model import HEADLINE_METRIC, ReportModel
from reporting.text import TEXT_MAX, isolate, short_text
from trainer import contract

# The Markdown table lists this many ranked runs; the leaderboard page has them all.
MARKDOWN_TOP = 10

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


# Characters a Markdown link target may hold as they are; the rest are percent-encoded (an
# unescaped ")", space, "<" or quote would end the target or start markup).
_URL_SAFE = ":/?#[]@!$&'*+,;=-._~%"


def md_escape(text: str) -> str:
    """Escape text for a Markdown table cell (also neutralises raw HTML)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.split())


def md_text(text: str, limit: int = TEXT_MAX) -> str:
    """An MLflow string for Markdown: shortened, escaped and isolated for bidi."""
    return isolate(md_escape(short_text(text, limit)))


def md_link_target(url: str) -> str:
    """A link target for ``[text](target)``: everything unsafe percent-encoded."""
    quoted = urllib.parse.quote(url, safe=_URL_SAFE)
    # "[" and "]" are fine in a URL but not inside Markdown's link syntax.
    return quoted.replace("[", "%5B").replace("]", "%5D")


def metric_name(text: str) -> str:
    """A KFP metric name made of ``[a-z0-9_]`` from any text."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def kfp_metrics(model: ReportModel) -> dict[str, float]:
    """Flat name -> float for KFP Metrics: run counts, then the best run's test recall and lifts."""
    stats = model.stats
    out: dict[str, float] = {
        "run_count": float(stats.total),
        "finished_runs": float(stats.finished),
        "failed_runs": float(stats.failed),
        "runs_with_history": float(stats.with_history),
        "degraded_runs": float(len(stats.degraded_runs)),
        "mlflow_reachable": 1.0,
    }
    if stats.lost:
        out["lost_runs"] = float(stats.lost)
    if stats.job is not None:
        out["job_runs"] = float(stats.job.total)
        out["job_finished_runs"] = float(stats.job.finished)
        out["job_failed_runs"] = float(stats.job.failed)
    if stats.mean is not None:
        out[f"mean_{stats.headline_metric}"] = stats.mean
    top = next(iter(model.ranked), None)
    if top is not None:
        out[f"best_run_{metric_name(model.rank.name)}"] = float(top.value)  # type: ignore[arg-type]
        for k in contract.RECALL_KS:
            v = top.run.metrics.get(contract.test_recall_key(k))
            if present(v):
                out[f"best_run_{contract.test_recall_key(k)}"] = v
        for name, lift in top.lifts.items():
            if lift is not None:
                out[f"best_run_lift_over_{metric_name(name)}"] = lift
    return out


def _table(model: ReportModel) -> list[str]:
    """The top runs as a Markdown table, each name linked to the MLflow UI when known."""
    rank = model.rank
    head = ["#", "Run", "Feature config", "Model config", rank.label]
    head += [f"Test R@{k}" for k in rank.recall_columns]
    head += [f"Lift vs {b}" for b in model.baselines]
    lines = ["| " + " | ".join(md_escape(h) for h in head) + " |"]
    lines.append("|" + "|".join(["---:"] + ["---"] * 3 + ["---:"] * (len(head) - 4)) + "|")
    for row in model.ranked[:MARKDOWN_TOP]:
        name = md_text(row.run.name, 80)
        link = model.url(row.run)
        if link:
            name = f"[{name}]({md_link_target(link)})"
        if model.this_run(row.run):
            name += " \u2190 this run"
        elif model.this_job(row.run):
            name += " \u2190 this job"
        cells = [
            str(row.rank),
            name,
            md_text(row.run.feature_config, 80),
            md_text(row.run.model_config, 80),
            fmt(row.value),
        ]
        cells += [fmt(row.recalls[k]) for k in rank.recall_columns]
        cells += [md_escape(pct(row.lifts[b])) for b in model.baselines]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _job_lines(model: ReportModel) -> list[str]:
    """This pipeline job's counts, the failed runs with their reasons, the degraded count."""
    stats = model.stats
    lines = []
    if stats.job is not None:
        job = stats.job
        lines += [
            f"This pipeline job ({md_text(job.job, 120)}) trained **{job.total}** runs: "
            f"{job.finished} finished, {job.failed} failed.",
            "",
        ]
    if stats.failed_runs:
        lines.append(f"Failed runs ({len(stats.failed_runs)}):")
        for run in stats.failed_runs[:MARKDOWN_TOP]:
            why = md_text(run.failure_reason, 160) if run.failure_reason else "no reason logged"
            mine = " (this job)" if model.this_job(run) else ""
            lines.append(f"- {md_text(run.name, 80)}{mine}: {run.shown_status}, {why}")
        if len(stats.failed_runs) > MARKDOWN_TOP:
            lines.append(f"- \u2026and {len(stats.failed_runs) - MARKDOWN_TOP} more")
        lines.append("")
    if stats.degraded_runs:
        lines += [
            f"Tracking was degraded (points sent late or missing) in "
            f"**{len(stats.degraded_runs)}** runs; the dashboard lists them.",
            "",
        ]
    return lines


def markdown(model: ReportModel) -> str:
    """The KFP Markdown summary: counts, the best run and the top runs as a table."""
    stats, rank = model.stats, model.rank
    lost = f" ({stats.lost} lost)" if stats.lost else ""
    lines = [
        f"# {md_escape(short_text(model.experiment))}: experiment report",
        "",
        (
            f"**{stats.total}** runs: {stats.finished} finished, {stats.failed} failed{lost}, "
            f"{stats.running} running. Ranked by **{md_escape(short_text(rank.name))}** "
            f"({rank.direction_word} is better)."
        ),
        "",
    ]
    lines += _job_lines(model)
    for note in model.data.notes:  # a blank line after each: Markdown would run them on
        lines += [f"> {md_escape(short_text(note, 2000))}", ""]
    ranked = model.ranked
    if not ranked:
        lines.append(f"No run has logged `{md_escape(short_text(rank.name))}` yet.")
        return "\n".join(lines) + "\n"
    top = ranked[0]
    sentence = ties.decision(model.rows, rank, HEADLINE_METRIC)
    if sentence:
        lines += [f"**Decision.** {md_text(sentence, 1000)}", ""]
    gate = promotion.latest_decision(model.data.runs, model.highlight_pipeline_job)
    if gate:
        lines += [f"**{md_text(gate.decision, 40)}.** {md_text(gate.sentence(), 1500)}", ""]
    lines.append(
        f"Best run: **{md_text(top.run.name)}** ({md_text(top.run.feature_config)} \u00d7 "
        f"{md_text(top.run.model_config)}), {md_escape(short_text(rank.label))} = {fmt(top.value)}."
    )
    lines.append("")
    lines += _table(model)
    if len(ranked) > MARKDOWN_TOP:
        lines.append("")
        lines.append(f"\u2026and {len(ranked) - MARKDOWN_TOP} more; see the leaderboard artifact.")
    return "\n".join(lines) + "\n"


def unreachable_markdown(safe_uri: str, experiment: str, reason: str) -> str:
    """The summary when MLflow at ``safe_uri`` (redacted) could not be read."""
    return (
        f"# {md_escape(short_text(experiment))}: experiment report\n\n"
        f"**MLflow was unreachable** at `{md_escape(safe_uri)}`; no runs could be read.\n\n"
        f"> {md_escape(reason)}\n"
    )


UNREACHABLE_METRICS = {"run_count": 0.0, "mlflow_reachable": 0.0}
