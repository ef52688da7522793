"""Aggregation: turn run records into what each view shows. No I/O, no HTML, no plotting.

Over 400 lines on purpose: one short function per view's table, sharing the metric helpers;
splitting them would scatter what a view shows over several modules.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Collection, Iterable, Sequence

from reporting.metric import RankMetric, best_value, has_direction, label, lower_is_better, present
from reporting.records import RunRecord
from trainer import contract


def metric_value(run: RunRecord, metric: str) -> float | None:
    """A run's logged value of ``metric`` (None when missing or NaN).

    MLflow keeps the value at the highest step as a metric's latest value, so for a history
    metric this is its last epoch's value.
    """
    value = run.metrics.get(metric)
    return value if present(value) else None


def epoch_values(run: RunRecord, metric: str) -> tuple[float | None, float | None, int | None]:
    """(value at the best epoch, value at the last epoch, best epoch) of a history metric.

    Logged ``best_``/``final_``/``best_epoch`` metrics win; the history fills what is missing.
    The best is finite (NaN and infinities never win); the last is shown as logged.
    """
    best = run.metrics.get(contract.best_key(metric))
    last = run.metrics.get(contract.final_key(metric))
    best_epoch_v = run.metrics.get(contract.BEST_EPOCH)
    best_epoch = int(best_epoch_v) if present(best_epoch_v) else None
    points = run.history.get(metric, [])
    if points and last is None:
        last = points[-1][1]
    finite_points = [p for p in points if present(p[1])]
    if finite_points and not present(best):
        step, best = min(finite_points, key=lambda p: p[1] if lower_is_better(metric) else -p[1])
        if best_epoch is None:
            best_epoch = step
    return (best if present(best) else None, last, best_epoch)


@dataclasses.dataclass
class LeaderRow:
    """One leaderboard row: ``value`` ranks (finite or None), ``shown`` is the value as logged."""

    rank: int | None
    run: RunRecord
    value: float | None
    shown: float | None
    best_epoch: int | None
    epoch_best: float | None
    epoch_last: float | None
    lifts: dict[str, float | None]
    recalls: dict[int, float | None]
    # Filled by reporting.ties.mark_ties: the rank value's 95% interval (None: not logged) and
    # whether the run is tied with the leader (None: unknown, no interval), whether that was
    # the best-model step's paired test (else the approximate one) and its interval of
    # "run - leader" as tagged.
    interval: tuple[float, float] | None = None
    tied: bool | None = None
    tie_paired: bool = False
    diff_ci: str = ""


def leaderboard(runs: Sequence[RunRecord], rank: RankMetric) -> list[LeaderRow]:
    """Runs ranked by ``rank`` (ties share a rank); runs without it follow, unranked."""
    k = rank.lift_k
    rows: list[LeaderRow] = []
    for run in runs:
        value = metric_value(run, rank.name)
        best, last, best_epoch = epoch_values(run, rank.epoch_metric)
        model = run.metrics.get(contract.test_recall_key(k))
        lifts: dict[str, float | None] = {}
        for baseline in contract.BASELINES:
            base = run.metrics.get(contract.baseline_recall_key(baseline, k))
            lifts[baseline] = (
                (model / base - 1.0) if present(model) and present(base) and base else None
            )
        recalls = {kk: run.metrics.get(contract.test_recall_key(kk)) for kk in contract.RECALL_KS}
        shown = run.metrics.get(rank.name)
        rows.append(LeaderRow(None, run, value, shown, best_epoch, best, last, lifts, recalls))
    sign = 1.0 if rank.lower_better else -1.0
    ranked = sorted(
        (r for r in rows if r.value is not None),
        key=lambda r: (sign * r.value, -r.run.start_time, r.run.name),  # type: ignore[operator]
    )
    previous: float | None = None
    for position, row in enumerate(ranked, start=1):
        row.rank = ranked[position - 2].rank if row.value == previous else position
        previous = row.value
    unranked = [r for r in rows if r.value is None]
    return ranked + unranked


@dataclasses.dataclass
class PairSummary:
    """Runs of one (feature config, model config) pair that a page does not list one by one."""

    feature_config: str
    model_config: str
    runs: int
    ranked: int
    failed: int
    best: float | None
    median: float | None


def listed_rows(
    rows: Sequence[LeaderRow], marked: Callable[[RunRecord], bool], cap: int
) -> tuple[list[LeaderRow], list[LeaderRow]]:
    """(rows listed one by one, the others), in the order of ``rows``.

    Listed: the best ``cap`` ranked, up to ``cap`` unranked, and every marked row (this run,
    this job's) wherever it ranks.
    """
    ranked = [r for r in rows if r.rank is not None]
    unranked = [r for r in rows if r.rank is None]
    keep = {id(r) for r in ranked[:cap]} | {id(r) for r in unranked[:cap]}
    keep |= {id(r) for r in rows if marked(r.run)}
    return [r for r in rows if id(r) in keep], [r for r in rows if id(r) not in keep]


def pair_summaries(rows: Sequence[LeaderRow], rank: RankMetric) -> list[PairSummary]:
    """The unlisted rows per (feature config, model config): counts, best and median rank value."""
    groups: dict[tuple[str, str], list[LeaderRow]] = {}
    for row in rows:
        pair = (row.run.feature_config or "(none)", row.run.model_config or "(none)")
        groups.setdefault(pair, []).append(row)
    out = []
    for (fc, mc), members in sorted(groups.items()):
        values = [r.value for r in members if r.value is not None]
        out.append(
            PairSummary(
                feature_config=fc,
                model_config=mc,
                runs=len(members),
                ranked=len(values),
                failed=sum(1 for r in members if r.run.failed),
                best=best_value(values, rank.name) if values else None,
                median=statistics.median(values) if values else None,
            )
        )
    return out


@dataclasses.dataclass
class JobStats:
    """What one pipeline job (a sweep) trained: its runs by outcome."""

    job: str
    total: int
    finished: int
    failed: int


@dataclasses.dataclass
class DashboardStats:
    """The dashboard's cards."""

    total: int
    finished: int
    failed: int
    running: int
    other: int
    headline_metric: str
    best: float | None
    mean: float | None
    best_run: RunRecord | None
    with_history: int
    failed_runs: list[RunRecord] = dataclasses.field(default_factory=list)
    degraded_runs: list[RunRecord] = dataclasses.field(default_factory=list)
    job: JobStats | None = None
    lost: int = 0


def job_stats(runs: Sequence[RunRecord], job: str) -> JobStats | None:
    """Runs of pipeline job ``job`` by outcome (None when no job is named)."""
    if not job:
        return None
    mine = [r for r in runs if r.pipeline_job == job]
    return JobStats(
        job=job,
        total=len(mine),
        finished=sum(1 for r in mine if r.status == contract.STATUS_FINISHED),
        failed=sum(1 for r in mine if r.failed),
    )


def dashboard(
    runs: Sequence[RunRecord],
    headline_metric: str,
    pipeline_job: str = "",
    leader: RunRecord | None = None,
) -> DashboardStats:
    """The dashboard's numbers: counts by status, the headline metric, failures, degradation.

    The best run is ``leader``, the leaderboard's first (chosen by the rank metric, on
    validation by default); ``best`` is its headline (test) value, shown and never used to
    choose. The headline's mean is over runs that logged it finite; the failed and the
    tracking-degraded runs come newest first; ``pipeline_job``'s runs are counted apart. A
    lost run counts as failed, ended or not (it will never finish).
    """
    by_status = {
        s: 0 for s in (contract.STATUS_FINISHED, contract.STATUS_FAILED, contract.STATUS_RUNNING)
    }
    for run in runs:
        status = contract.STATUS_FAILED if run.lost else run.status
        if status in by_status:
            by_status[status] += 1
    scored = [(metric_value(r, headline_metric), r) for r in runs]
    scored = [(v, r) for v, r in scored if v is not None]
    return DashboardStats(
        total=len(runs),
        finished=by_status[contract.STATUS_FINISHED],
        failed=by_status[contract.STATUS_FAILED],
        running=by_status[contract.STATUS_RUNNING],
        other=len(runs) - sum(by_status.values()),
        headline_metric=headline_metric,
        best=metric_value(leader, headline_metric) if leader else None,
        mean=statistics.fmean(v for v, _ in scored) if scored else None,
        best_run=leader,
        with_history=sum(1 for r in runs if r.has_history),
        failed_runs=latest_runs([r for r in runs if r.failed], len(runs)),
        degraded_runs=latest_runs([r for r in runs if r.degraded], len(runs)),
        job=job_stats(runs, pipeline_job),
        lost=sum(1 for r in runs if r.lost),
    )


def latest_runs(runs: Sequence[RunRecord], n: int = 10) -> list[RunRecord]:
    """The ``n`` most recently started runs."""
    return sorted(runs, key=lambda r: (-r.start_time, r.name))[:n]


@dataclasses.dataclass
class Cell:
    """One heatmap cell: mean, std (None for n < 2) and n of the metric; n == 0 is empty.

    ``half`` is the 95% interval's half-width of the mean (:func:`cell_half`), None when no
    run logged an interval and n < 2; ``buyers`` says whether buyer sampling is in it.
    """

    mean: float | None
    std: float | None
    n: int
    values: list[float]
    half: float | None = None
    buyers: bool = False


# Student's t, two-sided 95%, for 1..30 degrees of freedom (beyond: the normal's 1.96).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def cell_half(
    values: Sequence[float], bounds: Sequence[tuple[float, float] | None]
) -> tuple[float | None, bool]:
    """(95% half-width of the mean of a cell's runs, whether buyer sampling is counted).

    The runs of a cell differ by seed and were evaluated on the same buyers. The seeds' part
    is Student's t interval of their mean (t * sd / sqrt(n)); the buyers' part does not shrink
    with more seeds (every seed saw the same buyers), so it is the runs' own bootstrap
    half-width, root-mean-squared; the two add in quadrature (taken as independent). One run:
    its own interval. A cell where some run logged no interval counts the seeds only.

    Args:
        values: Each run's value.
        bounds: Each run's 95% interval (None: not logged), in the same order.
    """
    n = len(values)
    known = [b for b in bounds if b is not None]
    buyers = (
        math.sqrt(statistics.fmean(((b[1] - b[0]) / 2) ** 2 for b in known))
        if known and len(known) == n
        else None
    )
    if n < 2:
        return buyers, buyers is not None
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.959963984540054
    seeds = t * statistics.stdev(values) / math.sqrt(n)
    if buyers is None:
        return seeds, False
    return math.hypot(seeds, buyers), True


@dataclasses.dataclass
class Heatmap:
    """Feature config x model config grid."""

    metric: str
    feature_configs: list[str]
    model_configs: list[str]
    cells: dict[tuple[str, str], Cell]
    vmin: float | None
    vmax: float | None

    def cell(self, feature_config: str, model_config: str) -> Cell:
        """The cell, empty when no run of that pair logged the metric."""
        return self.cells.get((feature_config, model_config), Cell(None, None, 0, []))


def heatmap(
    runs: Sequence[RunRecord],
    metric: str,
    interval_of: Callable[[RunRecord, float], tuple[float, float] | None] | None = None,
) -> Heatmap:
    """Mean, std, n and the mean's 95% interval of ``metric`` per (feature, model config) pair.

    Args:
        runs: The runs.
        metric: The metric.
        interval_of: A run's 95% interval of its value (``ties.interval``); None: none known.
    """
    values: dict[tuple[str, str], list[float]] = {}
    bounds: dict[tuple[str, str], list[tuple[float, float] | None]] = {}
    fcs: set[str] = set()
    mcs: set[str] = set()
    for run in runs:
        fc, mc = run.feature_config or "(none)", run.model_config or "(none)"
        fcs.add(fc)
        mcs.add(mc)
        value = metric_value(run, metric)
        if value is not None:
            values.setdefault((fc, mc), []).append(value)
            bounds.setdefault((fc, mc), []).append(interval_of(run, value) if interval_of else None)
    cells = {
        key: Cell(
            statistics.fmean(vs),
            statistics.stdev(vs) if len(vs) > 1 else None,
            len(vs),
            vs,
            *cell_half(vs, bounds[key]),
        )
        for key, vs in values.items()
    }
    means = [c.mean for c in cells.values() if c.mean is not None]
    return Heatmap(
        metric,
        sorted(fcs),
        sorted(mcs),
        cells,
        min(means) if means else None,
        max(means) if means else None,
    )


@dataclasses.dataclass
class CompareRow:
    """One row of a comparison table: a value per run and which runs hold the best."""

    key: str
    label: str
    values: list[float | str | None]
    best: set[int]
    same: bool
    lower_better: bool = False


def compare_metrics(
    runs: Sequence[RunRecord], keys: Sequence[str] | None = None
) -> list[CompareRow]:
    """Metric rows for the chosen runs, with the best value per row marked."""
    if keys is None:
        keys = ordered_metric_keys({k for r in runs for k in r.metrics})
    rows = []
    for key in keys:
        # As logged (NaN and infinities shown as such); only finite values can be best.
        vals: list[float | None] = [r.metrics.get(key) for r in runs]
        if key == contract.BEST_EPOCH:
            vals = [int(v) if present(v) else v for v in vals]  # type: ignore[arg-type]
        if all(v is None for v in vals):
            continue
        best = best_value(vals, key) if has_direction(key) else None
        finite = [v for v in vals if present(v)]
        # A row where everyone ties is no contest: no highlight.
        winners = (
            {i for i, v in enumerate(vals) if present(v) and v == best}
            if best is not None and len(set(finite)) > 1
            else set()
        )
        rows.append(
            CompareRow(
                key, label(key), list(vals), winners, len(set(vals)) == 1, lower_is_better(key)
            )
        )
    return rows


def compare_params(runs: Sequence[RunRecord]) -> list[CompareRow]:
    """Param rows for the chosen runs; ``same`` marks rows where every run agrees."""
    keys = sorted({k for r in runs for k in r.params})
    rows = []
    for key in keys:
        vals: list[float | str | None] = [r.params.get(key) for r in runs]
        rows.append(CompareRow(key, key, vals, set(), len(set(vals)) == 1))
    return rows


def ordered_metric_keys(keys: Iterable[str]) -> list[str]:
    """Metrics in reading order: test recall, baselines, best/final history values, the rest."""
    keys = set(keys)
    order: list[str] = []
    order += [contract.test_recall_key(k) for k in contract.RECALL_KS]
    order += [
        contract.baseline_recall_key(b, k) for b in contract.BASELINES for k in contract.RECALL_KS
    ]
    for metric in contract.history_metrics():
        order += [contract.best_key(metric), contract.final_key(metric)]
    order.append(contract.BEST_EPOCH)
    head = [k for k in order if k in keys]
    # Raw history keys repeat final_* values; keep them last.
    rest = sorted(keys - set(head) - set(contract.history_metrics()))
    tail = [k for k in contract.history_metrics() if k in keys]
    return head + rest + tail


def choose_compare_runs(
    rows: Sequence[LeaderRow],
    runs_by_id: dict[str, RunRecord],
    run_ids: Sequence[str] | None,
    top_n: int,
) -> tuple[list[RunRecord], list[str]]:
    """The runs to compare: the given ids (in order), else the top ``top_n`` of the leaderboard.

    Returns:
        (runs, ids that were asked for but not found).
    """
    if run_ids:
        found = [runs_by_id[i] for i in run_ids if i in runs_by_id]
        missing = [i for i in run_ids if i not in runs_by_id]
        return found, missing
    return [r.run for r in rows[: max(0, top_n)]], []


@dataclasses.dataclass
class RecallSeries:
    """Test recall at each k for one run or one config group (mean +- std over seeds)."""

    label: str
    ks: list[int]
    mean: list[float | None]
    std: list[float | None]
    n: int
    marked: bool = False


def recall_by_run(
    runs: Sequence[RunRecord], marked: Collection[str] = frozenset()
) -> list[RecallSeries]:
    """One series per run that logged any test recall; runs whose id is in ``marked`` marked."""
    out = []
    for run in runs:
        vals = [metric_value(run, contract.test_recall_key(k)) for k in contract.RECALL_KS]
        if any(v is not None for v in vals):
            out.append(
                RecallSeries(
                    run.name,
                    list(contract.RECALL_KS),
                    vals,
                    [None] * len(vals),
                    1,
                    run.run_id in marked,
                )
            )
    return out


def recall_by_config(runs: Sequence[RunRecord]) -> list[RecallSeries]:
    """Mean +- std of test recall@k per (feature config, model config) that ran with >1 seed."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        if any(
            metric_value(run, contract.test_recall_key(k)) is not None for k in contract.RECALL_KS
        ):
            groups.setdefault((run.feature_config, run.model_config), []).append(run)
    out = []
    for (fc, mc), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        means, stds = [], []
        for k in contract.RECALL_KS:
            vs = [
                v
                for r in members
                if (v := metric_value(r, contract.test_recall_key(k))) is not None
            ]
            means.append(statistics.fmean(vs) if vs else None)
            stds.append(statistics.stdev(vs) if len(vs) > 1 else None)
        out.append(
            RecallSeries(f"{fc} \u00d7 {mc}", list(contract.RECALL_KS), means, stds, len(members))
        )
    return out


def baseline_means(runs: Sequence[RunRecord]) -> dict[str, list[float | None]]:
    """Mean baseline recall at each k over the runs that logged it."""
    out: dict[str, list[float | None]] = {}
    for baseline in contract.BASELINES:
        row = []
        for k in contract.RECALL_KS:
            vs = [
                v
                for r in runs
                if (v := metric_value(r, contract.baseline_recall_key(baseline, k))) is not None
            ]
            row.append(statistics.fmean(vs) if vs else None)
        if any(v is not None for v in row):
            out[baseline] = row
    return out


def varying_params(runs: Sequence[RunRecord], limit: int = 8) -> list[str]:
    """Params that take more than one value across runs, contract params first."""
    first = [
        contract.PARAM_FEATURE_CONFIG_ID,
        contract.PARAM_MODEL_CONFIG_ID,
        contract.PARAM_EMBEDDING_DIM,
        contract.PARAM_LEARNING_RATE,
        contract.PARAM_BATCH_SIZE,
        contract.PARAM_OPTIMIZER,
        contract.PARAM_EPOCHS,
    ]
    keys = {k for r in runs for k in r.params}
    ordered = [k for k in first if k in keys] + sorted(keys - set(first) - {contract.PARAM_SEED})
    out = []
    for key in ordered:
        if len({r.params.get(key) for r in runs}) > 1:
            out.append(key)
        if len(out) == limit:
            break
    return out
