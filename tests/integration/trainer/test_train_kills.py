"""A training SIGKILLed at several moments loses nothing it logged and resumes where it was.

Each case runs a real training process (tests/integration/trainer/kill_training.py) that
SIGKILLs itself at one moment, replays its journal with ``python -m trainer replay``, then
runs the same training again on the same folder, as a retried step or the same command does.
The config has no dropout, so the resumed training can be compared with an uninterrupted one
closely (with dropout the masks after a resume are new draws; bench/RESULTS.md measures it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainer import config as cfg
from trainer import contract, train
from trainer.__main__ import main as trainer_main

pytestmark = pytest.mark.integration  # TensorFlow, real processes

REPO_ROOT = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("kill_training.py")
EPOCHS = 4
# (moment, epoch it happens in, whole epochs whose points were logged before the kill)
MOMENTS = [
    ("mid-epoch", 3, 2),
    ("before-log", 2, 1),  # epoch 2 checkpointed, its points not logged: the resume logs them
    ("after-epoch", 3, 3),
    ("export", 0, EPOCHS),
]
# Per-epoch keys of the fit that every completed epoch has.
EPOCH_KEYS = (contract.METRIC_LOSS, contract.SELECTION_METRIC, contract.METRIC_EPOCH_SECONDS)


@pytest.fixture(scope="module")
def setup(rich_prepared, tmp_path_factory):
    """The rich tiny config for 4 epochs with refit and calibration, no dropout."""
    config, root = rich_prepared
    config = dataclasses.replace(
        config,
        model_configs=tuple(dataclasses.replace(m, dropout=0.0) for m in config.model_configs),
        training=dataclasses.replace(
            config.training, epochs=EPOCHS, refit=True, calibrate_repurchase=True
        ),
    )
    folder = tmp_path_factory.mktemp("kills")
    config_path = folder / "experiment.yaml"
    config_path.write_text(cfg.dump_config(config), encoding="utf-8")
    uri = f"sqlite:///{folder}/uninterrupted.db"
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(folder / "whole"), tracking_uri=uri
    )
    return config, config_path, root, result


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def journal_points(model_dir: Path, key: str) -> int:
    lines = (model_dir / contract.JOURNAL_FILE).read_text().splitlines()
    ops = [json.loads(line) for line in lines if line.endswith("}")]
    return sum(1 for op in ops if op["op"] == "metrics" for p in op["metrics"] if p[0] == key)


@pytest.mark.parametrize(("moment", "epoch", "logged"), MOMENTS, ids=[m[0] for m in MOMENTS])
def test_a_killed_training_loses_nothing_and_resumes(
    setup, tmp_path, moment, epoch, logged, capsys
):
    config, config_path, root, whole = setup
    model_dir, uri = tmp_path / "model", f"sqlite:///{tmp_path}/mlflow.db"
    argv = [str(DRIVER), moment, str(epoch), str(config_path), str(root / "examples")]
    proc = subprocess.run(
        [sys.executable, *argv, str(root / "xf"), str(model_dir), uri],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_USE_LEGACY_KERAS": "1"},
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    in_journal = journal_points(model_dir, contract.METRIC_LOSS)
    assert in_journal == logged

    # Replay: exactly what was logged before the kill, once, and the run ended FAILED.
    assert trainer_main(["replay", str(model_dir)]) == 0
    capsys.readouterr()
    client = MlflowClient(uri)
    (run,) = client.search_runs(client.search_experiments()[0].experiment_id)
    for key in EPOCH_KEYS:
        assert steps(client, run.info.run_id, key) == list(range(1, logged + 1)), key
    assert client.get_run(run.info.run_id).info.status == contract.STATUS_FAILED
    after_replay = len(steps(client, run.info.run_id, contract.METRIC_LOSS))

    # The same training again on the same folder: same run, resumed, every epoch once.
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(model_dir), tracking_uri=uri
    )
    assert result.run_id == run.info.run_id
    assert len(client.search_runs(run.info.experiment_id)) == 1
    finished = client.get_run(result.run_id)
    assert finished.info.status == contract.STATUS_FINISHED
    assert contract.TAG_FAILURE_REASON not in finished.data.tags  # the replay's, cleared
    for key in EPOCH_KEYS:
        assert steps(client, result.run_id, key) == list(range(1, EPOCHS + 1)), key
    refit_steps = steps(client, result.run_id, contract.refit_key(contract.METRIC_LOSS))
    assert refit_steps == list(range(1, result.best_epoch + 1))
    assert not (model_dir / contract.CHECKPOINT_DIR).exists()
    # Within float noise of the uninterrupted training (same seed, same data order).
    assert result.best_epoch == whole.best_epoch
    for key in (contract.METRIC_LOSS, contract.SELECTION_METRIC):
        assert result.history[key] == pytest.approx(whole.history[key], abs=2e-3), key
    print(
        f"KILL-TABLE | {moment} (epoch {epoch}) | {in_journal} | {after_replay} | "
        f"{len(steps(client, result.run_id, contract.METRIC_LOSS))} | "
        f"{max(abs(a - b) for a, b in zip(result.history[contract.SELECTION_METRIC], whole.history[contract.SELECTION_METRIC], strict=True)):.2e} |"
    )
