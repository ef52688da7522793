"""Successive halving against training every trial to the end, on Online Retail (issue 26, pt 2).

Two pipeline runs on kfp.local into one MLflow store, the same 16 trials in both (the draws
depend on the search seed and the config's id only, ``README.md`` "Search spaces"):

- **halving**: ``bench/halving_online_retail.yaml`` with ``halving_pipeline``: 16 trials x 1
  epoch, the best 4 on to 4 epochs, the best 1 on to 5 (eta 4), each from its checkpoint;
- **every trial to the end**: the same file with ``strategy: random`` (so the same draws) and
  ``sweep_pipeline``: all 16 trained to 5 epochs (early stopping as configured, in both).

The table: trials, training epochs spent (each run's logged epochs: the halving runs log each
epoch once across their rungs), the best run by validation (the selection metric) and its test
recall@100 with its bootstrap interval, whether the halving arm's best is tied with the full
arm's best on validation (paired over the same validation buyers, ``reporting.ties``), and the
wall time of each pipeline run.

Run: ``python -m bench halving`` (about an hour on 2 cores); ``--table-only`` reads an existing
store; ``--smoke`` checks the table code on nothing (no training).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import smoke

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "bench" / "halving_online_retail.yaml"
WORK = ROOT / ".local" / "bench" / "halving"
K = 100


def _configs() -> dict[str, Path]:
    """The two arms' config files: the bench's own, and its random twin (same draws)."""
    text = CONFIG.read_text(encoding="utf-8")
    halving_line = next(line for line in text.splitlines() if line.startswith("search:"))
    random_text = text.replace(halving_line, "search: {strategy: random, trials: 16, seed: 7}")
    assert random_text != text
    WORK.mkdir(parents=True, exist_ok=True)
    random_path = WORK / "every_trial.yaml"
    # The dataset path is relative to the config's folder: keep the twin beside the original.
    random_path.write_text(
        random_text.replace("source: ../data/", f"source: {ROOT / 'data'}/"), encoding="utf-8"
    )
    return {"halving": CONFIG, "sweep": random_path}


def run_arms(tracking_uri: str) -> dict[str, float]:
    """Both pipeline runs, one after the other; their wall times in seconds."""
    walls = {}
    for pipeline, config in _configs().items():
        started = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable, "-m", "pipelines", "run", "--pipeline", pipeline,
                "--config", str(config), "--tracking-uri", tracking_uri,
                "--local-root", str(WORK / f"local-{pipeline}"),
            ],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        walls[pipeline] = time.perf_counter() - started
        (WORK / f"{pipeline}.log").write_text(out.stdout + out.stderr, encoding="utf-8")
        if out.returncode:
            raise RuntimeError(f"{pipeline} pipeline failed; see {WORK / f'{pipeline}.log'}")
        print(f"{pipeline}: {walls[pipeline]:.0f} s", flush=True)
    return walls


def _epochs(client, run) -> int:
    """Epochs a run trained: the steps of its per-epoch loss (each epoch logged once)."""
    from trainer import contract

    return len({m.step for m in client.get_metric_history(run.info.run_id, contract.METRIC_LOSS)})


def table(tracking_uri: str, walls: dict[str, float] | None = None) -> str:
    """The Markdown table of both arms, read from the store."""
    from mlflow.tracking import MlflowClient

    from reporting import ties
    from reporting.best import _val_rows
    from reporting.query import ExperimentReader
    from trainer import config as cfg
    from trainer import contract

    client = MlflowClient(tracking_uri)
    name = cfg.load_config(str(CONFIG)).experiment
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    arms: dict[str, list] = {"halving": [], "sweep": []}
    for run in runs:
        arms["halving" if contract.TAG_HALVING_STATUS in run.data.tags else "sweep"].append(run)
    selection = contract.best_key(contract.val_recall_key(K))
    test = contract.test_recall_key(K)
    reader = ExperimentReader(tracking_uri)
    best, rows = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for arm, arm_runs in arms.items():
            judged = [r for r in arm_runs if test in r.data.metrics]  # evaluated: finished
            best[arm] = max(judged, key=lambda r: r.data.metrics[selection])
            rows[arm] = _val_rows(reader, best[arm].info.run_id, os.path.join(folder, arm))
    found = ties.paired_ties(rows["sweep"], {"h": rows["halving"]}, K)["h"]
    grid_epochs = sum(_epochs(client, r) for r in arms["sweep"])
    lines = [
        "| arm | trials | epochs trained | share of the full arm's | best by validation "
        f"| its val R@{K} | its test R@{K} [95%] | wall (s) |",
        "|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for arm, label in (("sweep", "every trial to 5 epochs"), ("halving", "halving, eta 4")):
        m = best[arm].data.metrics
        epochs = sum(_epochs(client, r) for r in arms[arm])
        wall = f"{walls[arm]:.0f}" if walls else "-"
        lines.append(
            f"| {label} | {len(arms[arm])} | {epochs} | {epochs / grid_epochs:.0%} "
            f"| {best[arm].info.run_name} | {m[selection]:.4f} "
            f"| {m[test]:.4f} [{m[contract.ci_low_key(test)]:.4f}, "
            f"{m[contract.ci_high_key(test)]:.4f}] | {wall} |"
        )
    diff = found.diff
    verdict = "tied" if found.tied else ("ahead" if diff.low > 0 else "behind")
    lines.append("")
    lines.append(
        f"Halving's best minus the full arm's best, validation recall@{K}, paired over the "
        f"{found.buyers:,} validation buyers: {diff.value:+.4f} [{diff.low:+.4f}, "
        f"{diff.high:+.4f}]: **{verdict}**."
    )
    return "\n".join(lines)


def main() -> None:
    if smoke():
        _configs()  # the twin config parses below; no training at smoke size
        from trainer import config as cfg

        for path in _configs().values():
            cfg.load_config(str(path))
        print("halving bench: configs parse (smoke: no training)")
        return
    tracking_uri = f"sqlite:///{WORK / 'mlflow.db'}"
    walls = None if "--table-only" in sys.argv else run_arms(tracking_uri)
    print(table(tracking_uri, walls))
