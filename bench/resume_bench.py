"""Checkpoint cost and resumed-training quality on the real Online Retail data.

1. Checkpoint cost: the default experiment (configs/online_retail.yaml, its first feature
   and model config: what ``make demo``'s default pair trains, refit and calibration on)
   trained end to end with ``run_training``; every ``EpochSaver.save`` (fit and refit epochs)
   is timed and the checkpoint folder's size read after it, against the epoch's own time.
2. Resume: the same training SIGKILLed in the first step of epoch ``KILL_EPOCH``
   (tests/integration/trainer/kill_training.py, a real process), then run again on the same
   folder: it resumes at the last whole epoch in the same MLflow run. Its per-epoch
   validation recall and its test recall (the evaluate step) against the uninterrupted
   training's, and the difference. Dropout is on in this config: the masks after a resume are
   new draws, so the resumed training is another sample of the same training, not the same
   bits (the tests check bit equality without dropout).

Ingest and transform outputs are cached under ``.local/bench/resume/`` (keyed as the train
benchmark keys its own). Run: ``python -m bench resume``; ``--smoke``: 2% of the buyers, 2
epochs, no refit. Prints Markdown tables; bench/RESULTS.md is written by hand from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from bench import size, smoke
from bench.train_bench import Settings, _cache_key, _subsample_source

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "online_retail.yaml"
CACHE = ROOT / ".local" / "bench" / "resume"
DRIVER = ROOT / "tests" / "integration" / "trainer" / "kill_training.py"
KILL_EPOCH = size(3, 2)


def experiment():
    """The demo's default pair, at the benchmark's size."""
    from trainer import config as cfg

    config = cfg.load_config(str(CONFIG))
    config = dataclasses.replace(
        config,
        feature_configs=config.feature_configs[:1],
        model_configs=config.model_configs[:1],
    )
    if smoke():
        training = dataclasses.replace(
            config.training, epochs=2, refit=False, calibrate_repurchase=False
        )
        config = dataclasses.replace(config, training=training)
    return config


def prepare(config) -> tuple[str, str]:
    """Ingest + transform, reused from the cache when current."""
    from trainer import contract, ingest, transform

    mode = "smoke" if smoke() else "full"
    key = _cache_key(config, Settings(mode=mode, buyer_share=size(1, 50)))
    folder = CACHE / mode
    ingest_dir, transform_dir = folder / "ingest", folder / "transform"
    stamp = folder / "cache_key"
    if stamp.exists() and stamp.read_text().strip() == key:
        print(f"data: reusing {folder}", flush=True)
        return str(ingest_dir), str(transform_dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = ""
    if smoke():
        column = config.dataset.columns[contract.BUYER_ID]
        source = _subsample_source(config.dataset.source, folder / "sub.csv.gz", column, 50)
    ingest.run_ingest(config, str(ingest_dir), source=source)
    transform.run_transform(config.feature_config(), str(ingest_dir), str(transform_dir))
    stamp.write_text(key)
    return str(ingest_dir), str(transform_dir)


def timed_saves() -> list[dict]:
    """Times every checkpoint save from now on; returns the list it fills."""
    from trainer.train import EpochSaver, size_bytes

    saves: list[dict] = []
    original = EpochSaver.save

    def save(self, model, epoch, logs, timestamp_ms):
        started = time.perf_counter()
        original(self, model, epoch, logs, timestamp_ms)
        saves.append(
            {
                "phase": os.path.basename(self.folder),
                "epoch": epoch + 1,
                "save_s": time.perf_counter() - started,
                "epoch_s": float(logs.get("epoch_seconds", float("nan"))),
                "bytes": size_bytes(self.folder),
            }
        )

    EpochSaver.save = save
    return saves


def train_and_evaluate(config, dirs: tuple[str, str], folder: Path, uri: str) -> dict:
    from trainer import contract, evaluate, train

    t = time.perf_counter()
    result = train.run_training(config, *dirs, str(folder / "model"), tracking_uri=uri)
    train_s = time.perf_counter() - t
    metrics = evaluate.run_evaluation(
        str(folder / "model"), dirs[0], str(folder / "evaluation"), tracking_uri=uri
    )
    return {
        "run_id": result.run_id,
        "best_epoch": result.best_epoch,
        "val": result.history[contract.SELECTION_METRIC],
        "test": {k: metrics[contract.test_recall_key(k)] for k in contract.RECALL_KS},
        "train_s": train_s,
    }


def killed_then_resumed(config, dirs: tuple[str, str], folder: Path, uri: str) -> dict:
    """Trains in a process SIGKILLed in epoch KILL_EPOCH, then again on the same folder."""
    from trainer import config as cfg

    config_path = folder / "experiment.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    config_path.write_text(cfg.dump_config(config), encoding="utf-8")
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(DRIVER), "mid-epoch", str(KILL_EPOCH), str(config_path), *dirs,
         str(folder / "model"), uri],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_USE_LEGACY_KERAS": "1"},
    )  # fmt: skip
    killed_s = time.perf_counter() - t
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(
            f"the killed training ended with {proc.returncode}: {proc.stderr[-2000:]}"
        )
    resumed = train_and_evaluate(config, dirs, folder, uri)
    return {**resumed, "killed_s": killed_s}


def main() -> dict:
    from mlflow.tracking import MlflowClient

    from trainer import contract

    config = experiment()
    dirs = prepare(config)
    work = CACHE / ("smoke" if smoke() else "full") / "runs"
    shutil.rmtree(work, ignore_errors=True)
    uri = f"sqlite:///{work}/mlflow.db"
    saves = timed_saves()
    whole = train_and_evaluate(config, dirs, work / "whole", uri)
    whole_saves = list(saves)
    resumed = killed_then_resumed(config, dirs, work / "killed", uri)
    client = MlflowClient(uri)
    steps = sorted(m.step for m in client.get_metric_history(resumed["run_id"], "loss"))

    print("\n| phase | epoch | epoch (s) | checkpoint save (s) | save / epoch | folder (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in whole_saves:
        print(f"| {s['phase']} | {s['epoch']} | {s['epoch_s']:.1f} | {s['save_s']:.3f} | "
              f"{s['save_s'] / s['epoch_s']:.2%} | {s['bytes'] / 2**20:.1f} |")  # fmt: skip
    print(f"\nresumed run: loss points at steps {steps} (one run: "
          f"{len(client.search_runs([client.get_run(resumed['run_id']).info.experiment_id]))} "
          f"runs in the experiment, 2 expected: uninterrupted + resumed)")  # fmt: skip
    print(
        "\n| training | best epoch | val recall@100 by epoch | test @10 | @50 | @100 | wall (s) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, r in (("uninterrupted", whole), (f"killed in epoch {KILL_EPOCH}, resumed", resumed)):
        val = ", ".join(f"{v:.4f}" for v in r["val"])
        test = " | ".join(f"{r['test'][k]:.4f}" for k in contract.RECALL_KS)
        wall = r["train_s"] + r.get("killed_s", 0.0)
        print(f"| {name} | {r['best_epoch']} | {val} | {test} | {wall:.0f} |")
    diff = " | ".join(f"{resumed['test'][k] - whole['test'][k]:+.4f}" for k in contract.RECALL_KS)
    print(f"| difference | | | {diff} | |")
    out = {"saves": whole_saves, "whole": whole, "resumed": resumed, "steps": steps}
    (work / "results.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
