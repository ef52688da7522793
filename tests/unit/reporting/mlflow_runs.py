"""Real MLflow runs shaped like the trainer's, for the report's unit and integration tests."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import time
from collections.abc import Callable

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from trainer import contract

EXPERIMENT = "reporting-test"
EVIL_KEY = '<script>k("1")</script>\u00fc\''
EVIL = "<script>alert(\"x\")</script> 'q' $a_b$ \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \u2603"


def log_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    *,
    fc: str = "fc_ids",
    mc: str = "mc_small",
    test_recall: dict[int, float] | None = None,
    baselines: dict[str, dict[int, float]] | None = None,
    history: dict[str, list[float]] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    extra_metrics: dict[str, float] | None = None,
    status: str = "FINISHED",
    start_time: int | None = None,
) -> str:
    """Log one run the way the trainer does (params, tags, history, final/best/test metrics)."""
    start = start_time if start_time is not None else int(time.time() * 1000)
    run = client.create_run(experiment_id, run_name=name, start_time=start)
    rid = run.info.run_id
    p = {
        contract.PARAM_EPOCHS: "3",
        contract.PARAM_BATCH_SIZE: "4096",
        contract.PARAM_LEARNING_RATE: "0.1",
        contract.PARAM_OPTIMIZER: "adagrad",
        contract.PARAM_EMBEDDING_DIM: "64",
        contract.PARAM_FEATURE_CONFIG_ID: fc,
        contract.PARAM_MODEL_CONFIG_ID: mc,
        contract.PARAM_DATASET_ID: "online_retail",
        contract.PARAM_SEED: "1",
    }
    p.update(params or {})
    t = {
        contract.TAG_FEATURE_CONFIG_NAME: fc,
        contract.TAG_MODEL_CONFIG_NAME: mc,
        contract.TAG_DATASET_NAME: "Online Retail",
        contract.TAG_MODEL_TYPE: contract.MODEL_TYPE_TWO_TOWER,
    }
    t.update(tags or {})
    ts = start
    metrics: list[Metric] = []
    for key, values in (history or {}).items():
        for step, value in enumerate(values):
            metrics.append(Metric(key, value, ts + step, step))
        metrics.append(Metric(contract.final_key(key), values[-1], ts, 0))
        best = min(values) if "loss" in key else max(values)
        metrics.append(Metric(contract.best_key(key), best, ts, 0))
    if history and contract.val_recall_key(100) in history:
        vals = history[contract.val_recall_key(100)]
        metrics.append(Metric(contract.BEST_EPOCH, float(vals.index(max(vals))), ts, 0))
    for k, v in (test_recall or {}).items():
        metrics.append(Metric(contract.test_recall_key(k), v, ts, 0))
    for b, per_k in (baselines or {}).items():
        for k, v in per_k.items():
            metrics.append(Metric(contract.baseline_recall_key(b, k), v, ts, 0))
    for k, v in (extra_metrics or {}).items():
        metrics.append(Metric(k, v, ts, 0))
    client.log_batch(
        rid,
        metrics=metrics,
        params=[Param(k, v) for k, v in p.items()],
        tags=[RunTag(k, v) for k, v in t.items()],
    )
    if status != "RUNNING":
        client.set_terminated(rid, status=status, end_time=start + 60_000)
    return rid


def curve(start: float, step: float, n: int = 3) -> list[float]:
    """A simple monotone curve."""
    return [round(start + step * i, 4) for i in range(n)]


def standard_history(scale: float) -> dict[str, list[float]]:
    """Loss falling, recall rising, scaled per run."""
    return {
        contract.METRIC_LOSS: curve(3.0, -0.1 * scale),
        contract.METRIC_VAL_LOSS: curve(3.2, -0.08 * scale),
        contract.val_recall_key(10): curve(0.02 * scale, 0.01 * scale),
        contract.val_recall_key(50): curve(0.06 * scale, 0.02 * scale),
        contract.val_recall_key(100): curve(0.1 * scale, 0.03 * scale),
    }


def rename_keys(tracking_uri: str, renames: dict[str, str]) -> None:
    """Rename param/metric keys (any prefix kept) straight in the SQLite database."""
    path = tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        for old, new in renames.items():
            db.execute("UPDATE params SET key = ? WHERE key = ?", (new, old))
            for table in ("metrics", "latest_metrics"):
                for prefix in ("", "final_", "best_"):
                    db.execute(
                        f"UPDATE {table} SET key = ? WHERE key = ?", (prefix + new, prefix + old)
                    )


@dataclasses.dataclass
class Sweep:
    """A populated store."""

    tracking_uri: str
    experiment_id: str
    ids: dict[str, str]


def populate_sweep(tracking_uri: str) -> Sweep:
    """Log the standard test sweep into a fresh store."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(EXPERIMENT)
    return Sweep(tracking_uri, experiment_id, sweep(client, experiment_id, tracking_uri))


def sweep(client: MlflowClient, experiment_id: str, tracking_uri: str) -> dict[str, str]:
    """Log a small sweep: 2 feature x 2 model configs (one pair never ran), seeds, a failed run,
    a running run without history, and a run whose every name is hostile.

    Returns:
        Run name -> run id.
    """
    base = 1_700_000_000_000
    ids: dict[str, str] = {}
    bl = {
        contract.BASELINE_POPULAR: {10: 0.05, 50: 0.10, 100: 0.16},
        contract.BASELINE_OWN_HISTORY: {10: 0.12, 50: 0.22, 100: 0.30},
    }
    specs = [
        ("ids-small-s1", "fc_ids", "mc_small", 0.20, "1"),
        ("ids-small-s2", "fc_ids", "mc_small", 0.22, "2"),
        ("ids-small-s3", "fc_ids", "mc_small", 0.24, "3"),
        ("ids-large", "fc_ids", "mc_large", 0.26, "1"),
        ("hist-small", "fc_history", "mc_small", 0.32, "1"),
    ]
    for i, (name, fc, mc, r100, seed) in enumerate(specs):
        ids[name] = log_run(
            client,
            experiment_id,
            name,
            fc=fc,
            mc=mc,
            test_recall={10: r100 / 4, 50: r100 / 1.6, 100: r100},
            baselines=bl,
            history=standard_history(r100 / 0.2),
            params={
                contract.PARAM_SEED: seed,
                "tower.layers": "[64]" if mc == "mc_small" else "[256, 64]",
            },
            start_time=base + i * 1000,
        )
    ids["failed"] = log_run(
        client,
        experiment_id,
        "failed",
        fc="fc_history",
        mc="mc_small",
        status="FAILED",
        start_time=base + 10_000,
    )
    ids["running"] = log_run(
        client,
        experiment_id,
        "running",
        fc="fc_ids",
        mc="mc_small",
        status="RUNNING",
        start_time=base + 11_000,
        # A live run: its tracker's heartbeat, far ahead so that it never goes stale however
        # long a session keeps this store (a stale one would be ended as lost by the report).
        tags={contract.TAG_HEARTBEAT: "2999-01-01T00:00:00Z"},
    )
    ids["evil"] = log_run(
        client,
        experiment_id,
        EVIL,
        fc=EVIL,
        mc="mc_small",
        test_recall={10: 0.01, 50: 0.02, 100: 0.03},
        history={contract.METRIC_LOSS: [5.0, 4.0], "evil_hist": [1.0, 2.0]},
        params={"evil_param": EVIL},
        tags={"note": EVIL},
        # Its validation summary only (no per-epoch recall): ranked last by the default metric.
        extra_metrics={"evil_metric": 1.5, contract.DEFAULT_RANK_METRIC: 0.02},
        start_time=base + 12_000,
    )
    # MLflow's client refuses "<" or quotes in keys, but a store can still hold them (older
    # servers, direct writes); rename in the real database so the report meets them.
    rename_keys(
        tracking_uri,
        {"evil_param": EVIL_KEY + "p", "evil_metric": EVIL_KEY + "m", "evil_hist": EVIL_KEY + "h"},
    )
    return ids


def log_retried_run(tracking_uri: str, experiment: str = "retried") -> str:
    """A run whose training was retried: epochs 1 and 2 logged twice, later with new values."""
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment(experiment)
    rid = client.create_run(eid, run_name="retried").info.run_id
    first = [Metric(contract.METRIC_LOSS, 3.0 - s, 1000 + s, s) for s in range(3)]
    # The retry resumes the same run and logs epochs 1 and 2 again, later.
    again = [Metric(contract.METRIC_LOSS, 9.0 + s, 5000 + s, s) for s in (1, 2)]
    client.log_batch(rid, metrics=first)
    client.log_batch(rid, metrics=again)
    # NaN and both infinities as MLflow stores them (inf as the largest float, NaN as a flag).
    odd = [math.nan, math.inf, -math.inf]
    client.log_batch(
        rid, metrics=[Metric(contract.METRIC_VAL_LOSS, v, 1000 + s, s) for s, v in enumerate(odd)]
    )
    client.set_terminated(rid)
    return rid


LogRun = Callable[..., str]


LOST_HEARTBEAT = "2020-01-01T00:00:00Z"
LOST_START = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def log_lost_runs(client: MlflowClient, experiment_id: str) -> dict[str, str]:
    """Runs a killed process left RUNNING (one with a heartbeat, one that never sent any), a
    live run and a finished one; their start times and the old heartbeat are fixed.

    Returns:
        Run name -> run id.
    """
    from trainer import tracking

    old = {contract.TAG_HEARTBEAT: LOST_HEARTBEAT}
    recall = {10: 0.1, 50: 0.2, 100: 0.3}
    return {
        "oom-killed": log_run(
            client, experiment_id, "oom-killed", status="RUNNING", tags=old, start_time=LOST_START
        ),
        "never-beat": log_run(
            client, experiment_id, "never-beat", status="RUNNING", start_time=LOST_START
        ),
        "alive": log_run(
            client,
            experiment_id,
            "alive",
            status="RUNNING",
            tags={contract.TAG_HEARTBEAT: tracking.stamp()},
            start_time=LOST_START,
        ),  # fmt: skip
        "done": log_run(
            client, experiment_id, "done", tags=old, test_recall=recall, start_time=LOST_START
        ),
    }
