"""Trainer benchmarks on the real Online Retail data, measured side by side in one run.

1. Training throughput: our training path (``TwoTowerModel`` + ``make_dataset`` + Keras
   ``fit``, as ``run_training`` runs it) against a bare TFRS loop on the same transformed
   TFRecords (a ``tfrs.Model`` with two ``Embedding`` towers and ``tfrs.tasks.Retrieval``,
   parse -> batch -> cache -> prefetch), same batch size, same optimizer. Examples/s over
   the epochs after the first (the first traces and fills the cache). Target: ours/bare
   >= 0.9.
2. Exact evaluation: ``retrieval.exact_top_k_chunked`` + ``recall_at_k`` against
   ``tfrs.metrics.FactorizedTopK`` (BruteForce index, and the default Streaming
   candidates) on the same trained model's test-query and catalog embeddings, one
   FactorizedTopK example per distinct (buyer, positive product) pair. Target: >= 5x
   faster, recall@10/50/100 equal to 1e-5.
3. Tracking overhead: ``run_training`` end to end with tracking off and with tracking on
   (our ``RunTracker``, async batched) against a local SQLite store and against a local
   ``mlflow server``; median of repeated runs. Wall medians on a shared machine cannot
   resolve 2%, so the tracker's own cost is measured too, without touching ``run_training``:
   the tracking calls one of those runs made (read back from its store: params, tags, every
   ``log_metrics`` call with its step, the artifacts) are replayed through ``RunTracker``'s
   public methods, timing the calling thread in each call ("blocked") and the CPU the rest of
   the process spends meanwhile (the send thread), and through ``MlflowClient`` one blocking
   ``log_metric`` per metric point (the seed's ``MLflowCallback``, the synchronous baseline).
   Target: ours (blocked + send thread CPU) <= 2% of the tracking-off wall time.

Ingest and transform outputs are cached under ``.local/bench/train/`` (keyed by the config
and every source file of ``trainer/``) and reused between runs.

Run: ``python -m bench train`` (or ``make bench``), ``python -m bench.train_bench --quick``
for a check on a 20% buyer subsample (``TRAIN_BENCH_QUICK=1`` does the same through the
registry); ``python -m bench --smoke train`` runs it on 2% of the buyers, 2 epochs of
throughput, 1 of tracking, 1 repeat. Prints a Markdown table; bench/RESULTS.md is written by
hand from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from bench import smoke

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "online_retail.yaml"
CACHE = ROOT / ".local" / "bench" / "train"
# A replayed tracking call waits for the time the recorded run took before it, at most this:
# a little over RunTracker's flush interval (2 s), by when its send thread has sent what was
# queued, as it has between two epochs of a real training.
REPLAY_MAX_GAP_S = 2.5


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one benchmark run does."""

    mode: str = "full"  # full, quick (20% of the buyers) or smoke (2%)
    buyer_share: int = 1  # keep the buyers whose id hashes to 0 mod this
    throughput_epochs: int = 5  # per model, alternating; the first is warm-up, not counted
    eval_repeats: int = 3
    # run_training is timed end to end (validation and export included), 3 variants x
    # repeats; 2 epochs keep the whole benchmark near 10 minutes on 2 cores, and make the
    # fixed costs of tracking (run creation, params, artifacts) weigh more, not less.
    tracking_epochs: int = 2
    tracking_repeats: int = 2

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if smoke():
            return cls("smoke", 50, throughput_epochs=2, eval_repeats=1, tracking_epochs=1,
                       tracking_repeats=1)  # fmt: skip
        if quick:
            return cls("quick", 5, throughput_epochs=3, tracking_epochs=2, tracking_repeats=1)
        return cls()


@dataclasses.dataclass
class Data:
    """Cached ingest and transform outputs of the benchmark's experiment."""

    config: object  # trainer.config.ExperimentConfig
    ingest_dir: str
    transform_dir: str
    train_rows: int


# --------------------------------------------------------------------------------------
# Data: ingest + transform, cached


def _cache_key(config, s: Settings) -> str:
    """The config, every source file of trainer/ and the subsample: what the outputs follow."""
    from trainer import config as cfg

    digest = hashlib.sha256(cfg.dump_config(config).encode())
    for path in sorted((ROOT / "trainer").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    digest.update(f"{s.mode}/{s.buyer_share}".encode())
    return digest.hexdigest()[:16]


def _subsample_source(source: str, out_path: Path, buyer_column: str, share: int) -> str:
    """Writes the rows of one buyer in ``share`` (stable hash) to a CSV.gz."""
    import pandas as pd

    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    ids = frame[buyer_column].str.replace(r"\.0+$", "", regex=True)
    keep = ids.map(lambda b: int(hashlib.md5(b.encode()).hexdigest(), 16) % share == 0)
    with gzip.open(out_path, "wt", encoding="utf-8", newline="") as f:
        frame[keep].to_csv(f, index=False)
    return str(out_path)


def prepare_data(s: Settings) -> Data:
    """Ingest + transform of configs/online_retail.yaml, reused from the cache when current."""
    from trainer import config as cfg
    from trainer import contract, ingest, transform

    config = ids_only(cfg.load_config(str(CONFIG)))
    key = _cache_key(config, s)
    folder = CACHE / s.mode
    ingest_dir, transform_dir = folder / "ingest", folder / "transform"
    stamp = folder / "cache_key"
    if stamp.exists() and stamp.read_text().strip() == key:
        print(f"data: reusing {folder}", flush=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        source = ""
        if s.buyer_share > 1:
            source = _subsample_source(
                config.dataset.source,
                folder / "subsample.csv.gz",
                config.dataset.columns[contract.BUYER_ID],
                s.buyer_share,
            )
        t = time.perf_counter()
        ingest.run_ingest(config, str(ingest_dir), source=source)
        t_ingest = time.perf_counter() - t
        t = time.perf_counter()
        transform.run_transform(config.feature_config(), str(ingest_dir), str(transform_dir))
        t_transform = time.perf_counter() - t
        stamp.write_text(key)
        print(
            f"data: ingest {t_ingest:.1f}s, transform {t_transform:.1f}s -> {folder}",
            flush=True,
        )
    stats = ingest.load_stats(str(ingest_dir))
    return Data(config, str(ingest_dir), str(transform_dir), int(stats["rows"]["train"]))


def ids_only(config):
    """The experiment reduced to the ID-only two-tower model (what the bare TFRS loop is).

    The bare loop embeds buyer and product ids with plain in-batch softmax and nothing else,
    so the comparison is made on that model (the 64-d, Adagrad 0.1 baseline) whatever
    feature and model configs the experiment file lists.
    """
    from trainer import config as cfg
    from trainer import contract

    dim = 64
    fc = cfg.FeatureConfig(
        id="ids",
        name="IDs only",
        buyer=(cfg.Feature(contract.BUYER_ID, "vocabulary", embedding_dim=dim),),
        product=(cfg.Feature(contract.PRODUCT_ID, "vocabulary", embedding_dim=dim),),
    )
    mc = cfg.ModelConfig(
        id="adagrad64",
        name="Adagrad 0.1, 64-d",
        embedding_dim=dim,
        optimizer="adagrad",
        learning_rate=0.1,
    )
    # One training per run_training call, as when the tracking figures were first taken (the
    # demo config's refit came later); calibration has no repurchase part to scale here.
    training = dataclasses.replace(config.training, refit=False, calibrate_repurchase=False)
    return dataclasses.replace(
        config, feature_configs=(fc,), model_configs=(mc,), training=training
    )


# --------------------------------------------------------------------------------------
# 1. Training throughput


def _optimizer(data: Data, mc, epochs: int):
    """The configured optimizer, built as run_training builds it."""
    import math

    from trainer import train

    steps = math.ceil(data.train_rows / data.config.training.batch_size)
    return train.make_optimizer(mc, steps, epochs)


def build_ours(data: Data):
    """Our training path as run_training builds it: (model, dataset)."""
    import tensorflow_transform as tft

    from trainer import inputs, layout, train

    config = data.config
    fc, mc, training = config.feature_config(), config.model_config(), config.training
    tft_output = tft.TFTransformOutput(data.transform_dir)
    ds = inputs.make_dataset(
        layout.transformed_pattern(data.transform_dir, "train"),
        tft_output,
        training.batch_size,
        shuffle_seed=training.seed,
    )
    model = train.TwoTowerModel(fc, mc, train.cardinalities(fc, tft_output))
    return model, ds


def build_bare(data: Data):
    """A minimal TFRS retrieval model and pipeline on the same transformed TFRecords."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs
    import tensorflow_transform as tft
    import tf_keras as keras

    from trainer import features as feats
    from trainer import layout, train

    config = data.config
    fc, mc, training = config.feature_config(), config.model_config(), config.training
    buyer_key = feats.transformed_name(fc.buyer[0])
    product_key = feats.transformed_name(fc.product[0])
    tft_output = tft.TFTransformOutput(data.transform_dir)
    spec = {k: tft_output.transformed_feature_spec()[k] for k in (buyer_key, product_key)}
    files = sorted(tf.io.gfile.glob(layout.transformed_pattern(data.transform_dir, "train")))
    ds = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(training.batch_size)
        .map(lambda x: tf.io.parse_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )
    sizes = train.cardinalities(fc, tft_output)

    class Bare(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.buyer = keras.layers.Embedding(sizes[buyer_key], mc.embedding_dim)
            self.product = keras.layers.Embedding(sizes[product_key], mc.embedding_dim)
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features, training=False):
            return self.task(self.buyer(features[buyer_key]), self.product(features[product_key]))

    return Bare(), ds


def bench_throughput(data: Data, s: Settings) -> tuple[dict, object]:
    """Ours and bare trained epoch by epoch, alternating, so both see the same machine load.

    Each model is compiled once and fit one epoch per call (optimizer state, data cache and
    traced train step carry over); the first epoch of each (tracing, cache fill) is not
    counted. Returns the figures and our trained model.
    """
    import tf_keras as keras

    keras.utils.set_random_seed(data.config.training.seed)
    models = {"ours": build_ours(data), "bare": build_bare(data)}
    for model, _ in models.values():
        model.compile(optimizer=_optimizer(data, data.config.model_config(), s.throughput_epochs))
    wall: dict[str, list[float]] = {n: [] for n in models}
    cpu: dict[str, list[float]] = {n: [] for n in models}
    loss: dict[str, list[float]] = {n: [] for n in models}
    for epoch in range(s.throughput_epochs):
        for name in ("bare", "ours") if epoch % 2 == 0 else ("ours", "bare"):
            model, ds = models[name]
            t, c = time.perf_counter(), time.process_time()
            hist = model.fit(ds, epochs=1, verbose=0)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            loss[name].append(round(hist.history["loss"][0], 1))
        print(
            f"  epoch {epoch + 1}: ours {wall['ours'][-1]:.2f}s, bare {wall['bare'][-1]:.2f}s "
            f"(cpu {cpu['ours'][-1]:.1f}s / {cpu['bare'][-1]:.1f}s)",
            flush=True,
        )
    rate = {n: data.train_rows / statistics.median(wall[n][1:]) for n in models}
    cpu_rate = {n: data.train_rows / statistics.median(cpu[n][1:]) for n in models}
    paired = [b / o for o, b in zip(wall["ours"][1:], wall["bare"][1:], strict=True)]
    return {
        "train_rows": data.train_rows,
        "batch_size": data.config.training.batch_size,
        "epochs": s.throughput_epochs,
        "ours_examples_per_s": round(rate["ours"]),
        "bare_examples_per_s": round(rate["bare"]),
        "ratio": round(rate["ours"] / rate["bare"], 3),
        "paired_ratio_median": round(statistics.median(paired), 3),
        "ours_cpu_examples_per_s": round(cpu_rate["ours"]),
        "bare_cpu_examples_per_s": round(cpu_rate["bare"]),
        "cpu_ratio": round(cpu_rate["ours"] / cpu_rate["bare"], 3),
        "ours_epoch_s": [round(t, 2) for t in wall["ours"]],
        "bare_epoch_s": [round(t, 2) for t in wall["bare"]],
        "ours_loss": loss["ours"],
        "bare_loss": loss["bare"],
    }, models["ours"][0]


# --------------------------------------------------------------------------------------
# 2. Exact evaluation vs tfrs.metrics.FactorizedTopK


def _embed(tower, tft_layer, frame, batch_size: int = 8192):
    """Tower embeddings of raw rows, transformed by the TFT graph first."""
    import numpy as np

    from trainer import inputs

    parts = []
    for start in range(0, len(frame), batch_size):
        transformed = tft_layer(inputs.raw_tensors(frame.iloc[start : start + batch_size]))
        parts.append(tower(transformed, training=False).numpy())
    return np.concatenate(parts)


def test_embeddings(data: Data, model):
    """Test queries (buyers as of the test split's start) and catalog, embedded by ``model``."""
    import pandas as pd
    import tensorflow_transform as tft

    from trainer import contract, inputs, layout, retrieval

    split = {n: pd.read_parquet(layout.split_path(data.ingest_dir, n)) for n in contract.SPLITS}
    catalog = pd.read_parquet(layout.catalog_path(data.ingest_dir))
    eval_set = retrieval.build_eval_set(split["test"], split["train"], catalog)
    history = pd.concat([split["train"], split["eval"]])
    tft_layer = tft.TFTransformOutput(data.transform_dir).transform_features_layer()
    as_of = inputs.as_of_time(history, split["test"])
    length = inputs.query_history_length(data.config, history)
    queries = _embed(model.buyer_tower, tft_layer,
                     inputs.query_frame(history, eval_set.buyers, as_of, length))  # fmt: skip
    candidates = _embed(model.product_tower, tft_layer, catalog)
    return queries, candidates, eval_set


def ours_recall(queries, candidates, eval_set) -> dict[int, float]:
    """What the evaluate step computes: exact top-k over the catalog (chunked), micro recall@k."""
    from trainer import contract, retrieval

    top, _ = retrieval.exact_top_k_chunked(queries, candidates, max(contract.RECALL_KS))
    return retrieval.recall_at_k(top, eval_set)


def factorized_top_k(queries, candidates, eval_set, index: str, batch_size: int):
    """Builds a FactorizedTopK metric and a compiled update over (buyer, positive) pairs.

    Returns a function that resets, runs and returns {k: recall}.
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from trainer import contract

    rows = np.repeat(np.arange(len(eval_set.positives)), [len(p) for p in eval_set.positives])
    ids = np.concatenate(eval_set.positives).astype(np.int64)
    pair_q = tf.constant(queries[rows], tf.float32)
    pair_c = tf.constant(candidates[ids], tf.float32)
    pair_ids = tf.constant(ids)
    k = max(contract.RECALL_KS)
    cand_ids = np.arange(len(candidates), dtype=np.int64)
    if index == "BruteForce":
        layer = tfrs.layers.factorized_top_k.BruteForce(k=k)
        layer.index(tf.constant(candidates, tf.float32), identifiers=tf.constant(cand_ids))
    else:  # FactorizedTopK's default: Streaming over a dataset of candidate batches
        cands = tf.data.Dataset.from_tensor_slices((cand_ids, candidates)).batch(128)
        layer = tfrs.layers.factorized_top_k.Streaming(k=k).index_from_dataset(cands)
    metric = tfrs.metrics.FactorizedTopK(candidates=layer, ks=contract.RECALL_KS)
    spec = [
        tf.TensorSpec([None, queries.shape[1]], tf.float32),
        tf.TensorSpec([None, queries.shape[1]], tf.float32),
        tf.TensorSpec([None], tf.int64),
    ]

    @tf.function(input_signature=spec)
    def update(q, c, i):
        metric.update_state(q, c, i)  # its return value is an Operation, not a Tensor

    def run() -> dict[int, float]:
        metric.reset_states()
        for start in range(0, len(ids), batch_size):
            end = start + batch_size
            update(pair_q[start:end], pair_c[start:end], pair_ids[start:end])
        return {kk: float(v) for kk, v in zip(contract.RECALL_KS, metric.result(), strict=True)}

    return run


def _timed(fn, repeats: int):
    """(median seconds, last result) over ``repeats`` calls after one warm-up call."""
    fn()
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def bench_evaluation(data: Data, model, repeats: int = 3) -> dict:
    """Times ours against FactorizedTopK (BruteForce, Streaming) and compares the recalls."""
    import numpy as np

    from trainer import contract

    queries, candidates, eval_set = test_embeddings(data, model)
    ours_s, ours = _timed(lambda: ours_recall(queries, candidates, eval_set), repeats)
    # Score ties at a cut-off would let two exact methods disagree; count them.
    scores = np.sort(queries @ candidates.T, axis=1)[:, ::-1]
    ties = {k: int(np.sum(scores[:, k - 1] == scores[:, k])) for k in contract.RECALL_KS}
    figures = {
        "queries": len(eval_set.buyers),
        "pairs": eval_set.num_pairs,
        "catalog": len(candidates),
        "ties_at_cutoff": ties,
        "ours_s": round(ours_s, 3),
        "ours_recall": {k: round(v, 6) for k, v in ours.items()},
    }
    batch = data.config.training.eval_batch_size
    for index in ("BruteForce", "Streaming"):
        t, rec = _timed(factorized_top_k(queries, candidates, eval_set, index, batch), repeats)
        diff = max(abs(rec[k] - ours[k]) for k in contract.RECALL_KS)
        figures[index] = {
            "s": round(t, 3),
            "speedup": round(t / ours_s, 1),
            "recall": {k: round(v, 6) for k, v in rec.items()},
            "max_abs_diff": diff,
        }
        print(
            f"  {index}: {t:.3f}s vs ours {ours_s:.3f}s, max |recall diff| {diff:.2e}",
            flush=True,
        )
    return figures


# --------------------------------------------------------------------------------------
# 3. Tracking overhead


def _run_training(data: Data, config, uri: str, workdir: Path, tag: str) -> dict:
    """One run_training call: wall and process CPU seconds, and the run it logged."""
    from trainer import train

    model_dir = workdir / tag
    t, c = time.perf_counter(), time.process_time()
    result = train.run_training(config, data.ingest_dir, data.transform_dir, str(model_dir),
                                tracking_uri=uri)  # fmt: skip
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    if uri and (result.run_id is None or result.tracking_degraded):
        raise RuntimeError(f"{tag}: tracking failed: {result.tracking_degraded}")
    shutil.rmtree(model_dir, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "run_id": result.run_id}


def _cold_start_s(uri: str) -> dict:
    """What a fresh process (a pipeline step) pays once: import mlflow, open the store."""
    import subprocess

    code = (
        "import time; t=time.perf_counter(); from mlflow.tracking import MlflowClient; "
        "i=time.perf_counter(); "
        f"MlflowClient({uri!r}).search_experiments(max_results=1); "
        "print(i-t, time.perf_counter()-i)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    imp, store = map(float, out.stdout.strip().splitlines()[-1].split())
    return {"import_s": imp, "store_s": store}


@dataclasses.dataclass
class RecordedRun:
    """The tracking calls of one run_training call, read back from the run it logged."""

    experiment: str
    name: str
    params: dict[str, str]
    tags: dict[str, str]
    # One entry per log_metrics call (its points share a timestamp and a step): seconds
    # after the run's start, step, metrics.
    calls: list[tuple[float, int, dict[str, float]]]
    artifacts: list[str]  # local copies of the run's top-level artifacts

    @property
    def points(self) -> int:
        return sum(len(m) for _, _, m in self.calls)


def record_of(uri: str, run_id: str, folder: Path) -> RecordedRun:
    """What the run ``run_id`` logged, as the calls that logged it."""
    from mlflow.tracking import MlflowClient

    from trainer import contract

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    calls: dict[tuple[int, int], dict[str, float]] = {}
    for key in run.data.metrics:
        for point in client.get_metric_history(run_id, key):
            calls.setdefault((point.timestamp, point.step), {})[key] = point.value
    start = run.info.start_time
    folder.mkdir(parents=True)
    local = Path(client.download_artifacts(run_id, "", str(folder)))
    return RecordedRun(
        experiment=client.get_experiment(run.info.experiment_id).name,
        name=run.info.run_name,
        params=dict(run.data.params),
        tags={
            k: v
            for k, v in run.data.tags.items()
            if not k.startswith("mlflow.") and k != contract.TAG_RUN_KEY
        },
        calls=[((ts - start) / 1000, step, m) for (ts, step), m in sorted(calls.items())],
        artifacts=[str(p) for p in sorted(local.iterdir())],
    )


def replay_ours(uri: str, run: RecordedRun, backlog_dir: Path) -> dict:
    """The recorded calls through RunTracker: blocked seconds, the send thread's CPU seconds.

    Each call waits for the time the recorded run took before it (at most REPLAY_MAX_GAP_S),
    so the send thread works between calls as it does between epochs. The CPU of the rest of
    the process over the replay (process CPU less this thread's) is the send thread's.
    """
    from trainer import tracking

    blocked = 0.0

    def timed(fn, *args, **kwargs):
        nonlocal blocked
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            blocked += time.perf_counter() - t

    tracker = tracking.RunTracker(uri, run.experiment, backlog_dir=str(backlog_dir))
    process, thread = time.process_time(), time.thread_time()
    timed(tracker.start, run.name, run.params, run.tags)
    previous = 0.0
    for offset, step, metrics in run.calls:
        time.sleep(min(max(offset - previous, 0.0), REPLAY_MAX_GAP_S))
        previous = offset
        timed(tracker.log_metrics, metrics, step=step)
    for path in run.artifacts:
        timed(tracker.log_artifact, path, Path(path).name if os.path.isdir(path) else None)
    timed(tracker.finish)
    background = (time.process_time() - process) - (time.thread_time() - thread)
    if tracker.degraded_reason:
        raise RuntimeError(f"replay through RunTracker: {tracker.degraded_reason}")
    return {"blocked_s": blocked, "background_cpu_s": max(background, 0.0)}


def replay_sync(uri: str, run: RecordedRun) -> dict:
    """The recorded calls as the seed's MLflowCallback made them: all blocking, one
    ``log_metric`` per metric point; blocked seconds."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(run.experiment).experiment_id
    t = time.perf_counter()
    run_id = client.create_run(experiment_id, run_name=run.name, tags=run.tags).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in run.params.items()])
    for _, step, metrics in run.calls:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            client.log_metric(run_id, key, value, now, step)
    for path in run.artifacts:
        if os.path.isdir(path):
            client.log_artifacts(run_id, path, Path(path).name)
        else:
            client.log_artifact(run_id, path)
    client.set_terminated(run_id, "FINISHED")
    return {"blocked_s": time.perf_counter() - t, "background_cpu_s": 0.0}


def _timed_runs(data: Data, config, variants: dict, s: Settings, workdir: Path) -> dict:
    """run_training per variant, ``tracking_repeats`` times in rotated order."""
    names = list(variants)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(s.tracking_repeats):
        # Rotate the order so slow drift of the machine spreads over every variant.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            m = _run_training(data, config, variants[name], workdir, f"{name}-{r}")
            runs[name].append(m)
            print(f"  {name}: wall {m['wall_s']:.2f}s, cpu {m['cpu_s']:.1f}s", flush=True)
    return runs


def _replays(run: RecordedRun, stores: dict, s: Settings, workdir: Path) -> dict:
    """Each (tracker, store) replay, ``tracking_repeats`` times."""
    replays: dict[str, list[dict]] = {}
    for r in range(s.tracking_repeats):
        for store, uri in stores.items():
            for tracker in ("ours", "sync"):
                if tracker == "ours":
                    m = replay_ours(uri, run, workdir / f"backlog-{store}-{r}")
                else:
                    m = replay_sync(uri, run)
                replays.setdefault(f"{tracker}_{store}", []).append(m)
                print(f"  replay {tracker} {store}: blocked {m['blocked_s']:.3f}s, send "
                      f"thread cpu {m['background_cpu_s']:.3f}s", flush=True)  # fmt: skip
    return replays


def bench_tracking(data: Data, s: Settings) -> dict:
    """run_training with tracking off / on (SQLite, server); the tracker's calls replayed."""
    from mlflow.tracking import MlflowClient

    from bench.report_bench import mlflow_server

    config = dataclasses.replace(
        data.config,
        training=dataclasses.replace(data.config.training, epochs=s.tracking_epochs),
    )
    workdir = Path(tempfile.mkdtemp(prefix="train-bench-"))
    try:
        (workdir / "embedded").mkdir()
        (workdir / "server").mkdir()
        sqlite_uri = f"sqlite:///{workdir / 'embedded' / 'mlflow.db'}"
        server_db = f"sqlite:///{workdir / 'server' / 'mlflow.db'}"
        with mlflow_server(server_db, workdir / "server") as server_uri:
            stores = {"sqlite": sqlite_uri, "server": server_uri}
            # The stores exist before timing, as they do for every run but a store's first.
            for uri in stores.values():
                MlflowClient(uri).search_experiments(max_results=1)
            cold = {name: _cold_start_s(uri) for name, uri in stores.items()}
            variants = {"off": "", "ours_sqlite": sqlite_uri, "ours_server": server_uri}
            runs = _timed_runs(data, config, variants, s, workdir)
            recorded = record_of(sqlite_uri, runs["ours_sqlite"][-1]["run_id"],
                                 workdir / "recorded")  # fmt: skip
            replays = _replays(recorded, stores, s, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _tracking_figures(s, cold, runs, replays, recorded)


def _tracking_figures(s: Settings, cold, runs, replays, recorded: RecordedRun) -> dict:
    def med(measured, key):
        return statistics.median(m[key] for m in measured)

    off_wall, off_cpu = med(runs["off"], "wall_s"), med(runs["off"], "cpu_s")
    figures = {
        "epochs": s.tracking_epochs,
        "repeats": s.tracking_repeats,
        "cold_start_s": {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in cold.items()},
        "recorded": {
            "log_metrics_calls": len(recorded.calls),
            "metric_points": recorded.points,
            "params": len(recorded.params),
            "artifacts": [Path(p).name for p in recorded.artifacts],
        },
        "runs": {},
        "replays": {},
    }
    for name, measured in runs.items():
        figures["runs"][name] = {
            "wall_s": [round(m["wall_s"], 2) for m in measured],
            "median_s": round(med(measured, "wall_s"), 2),
            "overhead_pct": round(100 * (med(measured, "wall_s") / off_wall - 1), 2),
            "cpu_median_s": round(med(measured, "cpu_s"), 1),
            "cpu_overhead_pct": round(100 * (med(measured, "cpu_s") / off_cpu - 1), 2),
        }
    for name, measured in replays.items():
        cost = med(measured, "blocked_s") + med(measured, "background_cpu_s")
        figures["replays"][name] = {
            "blocked_s": round(med(measured, "blocked_s"), 3),
            "background_cpu_s": round(med(measured, "background_cpu_s"), 3),
            "metered_pct": round(100 * cost / off_wall, 2),
        }
    return figures


# --------------------------------------------------------------------------------------
# Report


def _load() -> str:
    """1/5/15-minute load averages: other work on a 2-core machine skews wall times."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _versions() -> dict:
    import platform

    import mlflow
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tfrs": tfrs.__version__,
        "mlflow": mlflow.__version__,
        "nproc": os.cpu_count(),
    }


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def print_table(f: dict) -> None:
    """The Markdown block RESULTS.md is written from."""
    tp, ev, tr = f["throughput"], f["evaluation"], f["tracking"]
    ks = list(ev["ours_recall"])
    lines = [
        (
            f"versions: {f['versions']}; data: {f['data']}; load average before/after: "
            f"{f['load_before']} / {f['load_after']}"
        ),
        "",
        (
            f"### Training throughput ({tp['train_rows']:,} train examples, batch "
            f"{tp['batch_size']}, {tp['epochs']} epochs each, alternating, first not counted)"
        ),
        "| | examples/s (wall) | examples/s (process CPU) | epoch wall times (s) | loss |",
        "|---|---:|---:|---|---|",
        (
            f"| ours (TwoTowerModel + make_dataset) | {tp['ours_examples_per_s']:,} | "
            f"{tp['ours_cpu_examples_per_s']:,} | {tp['ours_epoch_s']} | {tp['ours_loss']} |"
        ),
        (
            f"| bare TFRS loop | {tp['bare_examples_per_s']:,} | "
            f"{tp['bare_cpu_examples_per_s']:,} | {tp['bare_epoch_s']} | {tp['bare_loss']} |"
        ),
        (
            f"| ours/bare | {tp['ratio']} (paired epochs: {tp['paired_ratio_median']}) | "
            f"{tp['cpu_ratio']} | | |"
        ),
        f"target ours/bare >= 0.9: {_verdict(tp['ratio'] >= 0.9)}",
        "",
        (
            f"### Exact evaluation ({ev['queries']:,} test buyers, "
            f"{ev['pairs']:,} (buyer, product) pairs, catalog {ev['catalog']:,}; "
            f"score ties at the cut-offs: {ev['ties_at_cutoff']})"
        ),
        "| | time (s) | ours faster by | "
        + " | ".join(f"recall@{k}" for k in ks)
        + " | max abs diff |",
        "|---|---:|---:|" + "---:|" * len(ks) + "---:|",
        f"| ours (exact_top_k_chunked + recall_at_k) | {ev['ours_s']:.3f} | | "
        + " | ".join(f"{ev['ours_recall'][k]:.6f}" for k in ks)
        + " | |",
    ]
    for index in ("BruteForce", "Streaming"):
        e = ev[index]
        lines.append(
            f"| FactorizedTopK, {index} | {e['s']:.3f} | {e['speedup']}x | "
            + " | ".join(f"{e['recall'][k]:.6f}" for k in ks)
            + f" | {e['max_abs_diff']:.1e} |"
        )
    best = min(ev["BruteForce"]["speedup"], ev["Streaming"]["speedup"])
    same = max(ev["BruteForce"]["max_abs_diff"], ev["Streaming"]["max_abs_diff"]) <= 1e-5
    lines += [
        (
            f"target >= 5x faster than the faster FactorizedTopK, recall equal to 1e-5: "
            f"{_verdict(best >= 5 and same)}"
        ),
    ]
    print("\n" + "\n".join(lines + _tracking_lines(tr)))


def _tracking_lines(tr: dict) -> list[str]:
    """The tracking part of the Markdown block."""
    rec = tr["recorded"]
    lines = [
        "",
        (
            f"### Tracking overhead (run_training end to end, {tr['epochs']} epochs, median of "
            f"{tr['repeats']}; once per fresh process: {tr['cold_start_s']})"
        ),
        "| variant | wall (s) | runs (s) | wall vs off | process CPU vs off |",
        "|---|---:|---|---:|---:|",
    ]
    for name, v in tr["runs"].items():
        lines.append(
            f"| {name} | {v['median_s']:.2f} | {v['wall_s']} | {v['overhead_pct']:+.2f}% "
            f"| {v['cpu_overhead_pct']:+.2f}% |"
        )
    lines += [
        "",
        (
            f"Tracker calls of one ours_sqlite run replayed ({rec['log_metrics_calls']} "
            f"log_metrics calls, {rec['metric_points']} metric points, {rec['params']} params, "
            f"artifacts {rec['artifacts']}), median of {tr['repeats']}:"
        ),
        "| tracker | store | blocked in tracker | send thread CPU | metered / off wall |",
        "|---|---|---:|---:|---:|",
    ]
    for name, v in tr["replays"].items():
        tracker, store = name.split("_", 1)
        label = "ours (RunTracker)" if tracker == "ours" else "sync per-metric (MlflowClient)"
        lines.append(
            f"| {label} | {store} | {v['blocked_s']:.3f} s | {v['background_cpu_s']:.3f} s "
            f"| {v['metered_pct']:.2f}% |"
        )
    replays = tr["replays"]
    metered = max(replays["ours_sqlite"]["metered_pct"], replays["ours_server"]["metered_pct"])
    wall = max(tr["runs"]["ours_sqlite"]["overhead_pct"], tr["runs"]["ours_server"]["overhead_pct"])
    lines.append(
        f"target ours <= 2% over off: metered {_verdict(metered <= 2)} "
        f"({metered:.2f}%); wall medians {_verdict(wall <= 2)} ({wall:+.2f}%)"
    )
    return lines


def main(argv: list[str] | None = None) -> dict:
    """Run the three trainer benchmarks and print the results table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("TRAIN_BENCH_QUICK", "") not in ("", "0"),
        help="a check on a 20%% buyer subsample, fewer epochs and repeats",
    )
    args = parser.parse_args(argv or [])
    s = Settings.make(args.quick)
    started = time.perf_counter()
    data = prepare_data(s)
    figures = {
        "load_before": _load(),
        "settings": dataclasses.asdict(s),
        "versions": _versions(),
        "data": {"mode": s.mode, "train_rows": data.train_rows},
    }
    print("throughput:", flush=True)
    figures["throughput"], model = bench_throughput(data, s)
    print("evaluation:", flush=True)
    figures["evaluation"] = bench_evaluation(data, model, s.eval_repeats)
    print("tracking:", flush=True)
    figures["tracking"] = bench_tracking(data, s)
    figures["total_s"] = round(time.perf_counter() - started, 1)
    figures["load_after"] = _load()
    print_table(figures)
    print(f"\ntotal {figures['total_s']} s")
    out = CACHE / f"results-{s.mode}.json"
    out.write_text(json.dumps(figures, indent=2, default=str))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
