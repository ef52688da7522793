"""``python -m pipelines promote`` on a real SQLite store: gate, promote, refuse, roll back."""

import os

import pytest

from pipelines.__main__ import main
from tests.unit.trainer.test_registry import make_run, rows
from trainer import contract, registry, tracking

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.fixture
def config_path(tmp_path):
    with open(os.path.join(REPO, "configs", "online_retail.yaml"), encoding="utf-8") as f:
        text = f.read()
    source = os.path.join(REPO, "data", "online_retail", "online_retail.csv.gz")
    text = text.replace("../data/online_retail/online_retail.csv.gz", source)
    text = text.replace("model_name: online-retail-two-tower", "model_name: recs")
    path = tmp_path / "experiment.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _champion(client) -> str:
    found = registry.version_by_alias(client, "recs", contract.ALIAS_CHAMPION)
    return found.version if found else ""


def test_promote_by_run_id_then_reject_then_rollback(config_path, tracking_uri, tmp_path, capsys):
    client = tracking.open_client(tracking_uri)
    base = ["promote", "--config", config_path, "--tracking-uri", tracking_uri]
    first = make_run(client, tmp_path, rows(0.5, 0.2))
    assert main([*base, "--run-id", first]) == 0
    out = capsys.readouterr().out
    assert "PROMOTE: no champion yet" in out and "champion=1" in out
    better = make_run(client, tmp_path, rows(0.6, 0.25))
    assert main([*base, "--run-id", better, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "PROMOTE" in out and "champion=1" in out and _champion(client) == "1"
    assert main([*base, "--version", "2"]) == 0
    assert "champion=2" in capsys.readouterr().out and _champion(client) == "2"
    worse = make_run(client, tmp_path, rows(0.4, 0.2))
    assert main([*base, "--run-id", worse]) == 0
    out = capsys.readouterr().out
    assert out.startswith("registered run") and "REJECT" in out and _champion(client) == "2"
    assert main([*base, "--rollback", "1"]) == 0
    assert "champion=1" in capsys.readouterr().out and _champion(client) == "1"


def test_bad_input_is_one_line_and_moves_nothing(config_path, tracking_uri, tmp_path, capsys):
    client = tracking.open_client(tracking_uri)
    base = ["promote", "--config", config_path, "--tracking-uri", tracking_uri]
    assert main([*base, "--version", "7"]) == 2
    # MLflow's own log lines may come first (a new store); ours is one line.
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: registered model 'recs' has no version '7'"
    bare = make_run(client, tmp_path, rows(0.5, 0.2), with_model=False)
    assert main([*base, "--run-id", bare]) == 2
    assert "has no MLflow model" in capsys.readouterr().err
    assert main([*base, "--rollback", "1"]) == 2  # nothing registered yet
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: registered model")
    assert _champion(client) == ""
