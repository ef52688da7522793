"""Registry and gate on a real SQLite MLflow store: register the winner, decide, promote, roll back.

Runs are made the way the train and evaluate steps leave them (params, tags, metrics, an
MLflow model folder at ``model/``, ``evaluation/per_buyer_test.parquet``); the per-buyer rows
are synthetic, with known recall rates per slice, so each decision is known in advance.
"""

import os

import numpy as np
import pandas as pd
import pytest

from trainer import config as cfg
from trainer import contract, registry, retrieval, tracking

NAME = "recs"
BUYERS = 3000
REGISTRY = cfg.Registry(model_name=NAME)


def rows(repeat_rate: float, new_rate: float, seed: int = 0, buyers: int = BUYERS) -> pd.DataFrame:
    """Per-buyer test rows: 60% repeat targets, the given hit rate at every k for each part.

    The buyers and their targets are always the same (one split); ``seed`` draws the hits.
    """
    rng = np.random.default_rng(0)
    pairs = rng.geometric(0.12, buyers)
    repeat = rng.binomial(pairs, 0.6)
    new = pairs - repeat
    hit_seed = np.random.default_rng(1000 + seed)
    repeat_hits = hit_seed.binomial(repeat, repeat_rate)
    new_hits = hit_seed.binomial(new, new_rate)
    data = {
        contract.SCORER: contract.SCORER_MODEL,
        contract.BUYER_ID: [f"b{i}" for i in range(buyers)],
    }
    for part, n, hit in (
        ("", pairs, repeat_hits + new_hits),
        (contract.REPEAT, repeat, repeat_hits),
        (contract.NEW, new, new_hits),
    ):
        data[contract.pairs_column(part)] = n.astype(np.int32)
        for k in contract.RECALL_KS:
            data[contract.hits_column(k, part)] = hit.astype(np.int32)
    return pd.DataFrame(data)


@pytest.fixture
def client(tracking_uri):
    return tracking.open_client(tracking_uri)


def make_run(
    client,
    tmp_path,
    per_buyer: pd.DataFrame | None,
    key: str = "p1",
    job: str = "job-1",
    with_model: bool = True,
    val: float = 0.3,
) -> str:
    experiment = client.get_experiment_by_name("exp")
    experiment_id = (
        experiment.experiment_id
        if experiment
        # Artifacts under the test's folder (MLflow's default root is ./mlruns in the cwd).
        else client.create_experiment("exp", artifact_location=(tmp_path / "artifacts").as_uri())
    )
    run = client.create_run(
        experiment_id,
        tags={
            contract.TAG_PIPELINE_JOB: job,
            contract.TAG_PROTOCOL_KEY: key,
            contract.TAG_PROTOCOL_EVALUATION: "eval-1",
        },
    )
    run_id = run.info.run_id
    client.log_param(run_id, contract.PARAM_FEATURE_CONFIG_ID, "history")
    client.log_param(run_id, contract.PARAM_MODEL_CONFIG_ID, "logq")
    client.log_param(run_id, contract.PARAM_SEED, "42")
    client.log_metric(run_id, contract.DEFAULT_RANK_METRIC, val)
    folder = tmp_path / run_id
    if with_model:
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "MLmodel").write_text("flavors: {}\n")
        client.log_artifacts(run_id, str(folder / "model"), contract.MLFLOW_MODEL_ARTIFACT)
    if per_buyer is not None:
        folder.mkdir(exist_ok=True)
        path = str(folder / contract.PER_BUYER_TEST_FILE)
        retrieval.write_rows([per_buyer], path)
        client.log_artifact(run_id, path, contract.EVALUATION_ARTIFACT_DIR)
    client.set_terminated(run_id)
    return run_id


def champion(client) -> str:
    found = registry.version_by_alias(client, NAME, contract.ALIAS_CHAMPION)
    return found.version if found else ""


# --- the gate alone ---------------------------------------------------------------------


def test_a_clearly_better_challenger_is_promoted():
    result = registry.decide(rows(0.60, 0.20), rows(0.50, 0.15), k=100, tolerance=0.01)
    assert result.decision == contract.GATE_PROMOTE, result.reason
    assert result.lift.low > 0 and result.buyers == BUYERS
    names = [s.name for s in result.slices]
    assert names[:2] == ["repeat targets", "new targets"] and len(names) == 5


def test_a_clearly_worse_challenger_is_rejected():
    result = registry.decide(rows(0.45, 0.15), rows(0.55, 0.15), k=100, tolerance=0.01)
    assert result.decision == contract.GATE_REJECT
    assert "repeat targets" in result.reason or "below zero" in result.reason


def test_the_same_model_is_inconclusive():
    result = registry.decide(rows(0.5, 0.2), rows(0.5, 0.2), k=100, tolerance=0.01)
    assert result.decision == contract.GATE_INCONCLUSIVE
    assert "holds zero" in result.reason


def test_better_overall_but_a_slice_surely_worse_is_rejected():
    # Repeat targets +0.08, new targets -0.08: the total rises, the new-target slice regresses.
    result = registry.decide(rows(0.58, 0.12), rows(0.50, 0.20), k=100, tolerance=0.01)
    assert result.lift.low > 0
    assert result.decision == contract.GATE_REJECT
    assert "slice 'new targets' regresses" in result.reason


def test_a_slice_loss_within_noise_blocks_promotion_without_rejecting():
    # New targets lose ~0.016 on the point value (> tolerance 0.01), not surely (seeded draws).
    few = dict(buyers=600)
    result = registry.decide(rows(0.60, 0.19, 3, **few), rows(0.50, 0.20, 1, **few), 100, 0.01)
    new = next(s for s in result.slices if s.name == "new targets")
    assert new.lift.value < -0.01 and new.lift.high > 0, new
    assert result.decision == contract.GATE_INCONCLUSIVE
    assert "loses more than the tolerance" in result.reason
    # With a looser tolerance the same figures promote.
    looser = registry.decide(rows(0.60, 0.19, 3, **few), rows(0.50, 0.20, 1, **few), 100, 0.05)
    assert looser.decision == contract.GATE_PROMOTE


def test_other_buyers_are_inconclusive_never_compared():
    result = registry.decide(rows(0.6, 0.2), rows(0.5, 0.2, buyers=BUYERS - 5), 100, 0.01)
    assert result.decision == contract.GATE_INCONCLUSIVE
    assert "not the same test split" in result.reason


# --- the registry ----------------------------------------------------------------------


def test_register_makes_one_tagged_version_with_the_challenger_alias(client, tmp_path):
    run_id = make_run(client, tmp_path, rows(0.5, 0.2))
    client.log_metric(run_id, "test_recall_at_100", 0.37)
    version = registry.register_run(client, NAME, run_id, pipeline_job="job-1")
    assert version.version == "1" and contract.ALIAS_CHALLENGER in version.aliases
    assert version.tags[contract.TAG_VERSION_RUN_ID] == run_id
    assert version.tags[contract.TAG_VERSION_FEATURE_CONFIG] == "history"
    assert version.tags[contract.TAG_VERSION_MODEL_CONFIG] == "logq"
    assert version.tags[contract.TAG_VERSION_SEED] == "42"
    assert version.tags[contract.TAG_VERSION_PIPELINE_JOB] == "job-1"
    assert version.tags[contract.TAG_VERSION_PROTOCOL_KEY] == "p1"
    assert float(version.tags["metric.test_recall_at_100"]) == 0.37
    assert float(version.tags[f"metric.{contract.DEFAULT_RANK_METRIC}"]) == 0.3
    mv = client.get_model_version(NAME, "1")
    assert mv.run_id == run_id and mv.source.endswith(f"/{contract.MLFLOW_MODEL_ARTIFACT}")
    # A retried step finds its version instead of adding one.
    again = registry.register_run(client, NAME, run_id, pipeline_job="job-1")
    assert again.version == "1"
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1


def test_a_run_without_an_mlflow_model_is_refused_naming_it(client, tmp_path):
    run_id = make_run(client, tmp_path, rows(0.5, 0.2), with_model=False)
    with pytest.raises(registry.RegistryError, match=f"run {run_id} has no MLflow model"):
        registry.register_run(client, NAME, run_id)


def test_a_name_mlflow_refuses_is_a_one_line_error(client, tmp_path):
    run_id = make_run(client, tmp_path, rows(0.5, 0.2))
    with pytest.raises(registry.RegistryError, match="MLflow refuses the registered model name"):
        registry.register_run(client, "a/b", run_id)


# --- gate and promotion against the champion ---------------------------------------------


def _register(client, tmp_path, per_buyer, **kw) -> str:
    return registry.register_run(client, NAME, make_run(client, tmp_path, per_buyer, **kw)).version


def test_first_promotes_then_a_worse_one_is_rejected_and_the_champion_stays(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.5, 0.2))
    first = registry.gate_version(client, NAME, v1, REGISTRY)
    assert first.decision == contract.GATE_PROMOTE and "no champion" in first.reason
    moved = registry.promote(client, NAME, v1, REGISTRY, expected_champion="")
    assert moved.moved and champion(client) == "1"
    v2 = _register(client, tmp_path, rows(0.4, 0.2, seed=0))
    second = registry.gate_version(client, NAME, v2, REGISTRY)
    assert second.decision == contract.GATE_REJECT
    tags = registry.get_version(client, NAME, v2).tags
    assert tags[contract.TAG_GATE_DECISION] == contract.GATE_REJECT
    assert tags[contract.TAG_GATE_CHAMPION] == "1"
    assert '"lift"' in tags[contract.TAG_GATE_FIGURES] and tags[contract.TAG_GATE_REASON]
    assert champion(client) == "1"
    assert registry.get_version(client, NAME, v2).aliases == (contract.ALIAS_CHALLENGER,)


def test_promote_reads_the_champion_again_and_decides_again_if_it_moved(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.40, 0.10))
    registry.promote(client, NAME, v1, REGISTRY)
    # Two sweeps gate against version 1 at once: v2 (much better) and v3 (a little better).
    v2 = _register(client, tmp_path, rows(0.60, 0.20), job="job-2")
    v3 = _register(client, tmp_path, rows(0.45, 0.12), job="job-3")
    assert registry.gate_version(client, NAME, v2, REGISTRY).decision == "PROMOTE"
    assert registry.gate_version(client, NAME, v3, REGISTRY).decision == "PROMOTE"
    assert registry.promote(client, NAME, v2, REGISTRY, expected_champion="1").moved
    late = registry.promote(client, NAME, v3, REGISTRY, expected_champion="1")
    assert not late.moved and late.result.decision == contract.GATE_REJECT
    assert champion(client) == "2"  # never the worse model
    assert registry.get_version(client, NAME, v3).tags[contract.TAG_GATE_CHAMPION] == "2"


def test_another_protocol_without_its_split_is_inconclusive_and_moves_nothing(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.4, 0.1), key="old")
    registry.promote(client, NAME, v1, REGISTRY)
    v2 = _register(client, tmp_path, rows(0.6, 0.2), key="new")
    result = registry.gate_version(client, NAME, v2, REGISTRY)
    assert result.decision == contract.GATE_INCONCLUSIVE
    assert "protocol key old" in result.reason and "--examples" in result.reason
    assert champion(client) == "1"


def test_a_champion_whose_model_cannot_be_loaded_is_inconclusive(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.4, 0.1), key="old")
    registry.promote(client, NAME, v1, REGISTRY)
    v2 = _register(client, tmp_path, rows(0.6, 0.2), key="new")
    examples = tmp_path / "examples"
    examples.mkdir()  # an ingest folder without its splits
    challenger = registry.get_version(client, NAME, v2)
    holder = registry.version_by_alias(client, NAME, contract.ALIAS_CHAMPION)
    result = registry.decide_against(client, challenger, holder, REGISTRY, str(examples))
    assert result.decision == contract.GATE_INCONCLUSIVE
    assert "cannot" in result.reason, result.reason
    assert champion(client) == "1"


def test_missing_per_buyer_rows_are_inconclusive(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.4, 0.1))
    registry.promote(client, NAME, v1, REGISTRY)
    v2 = _register(client, tmp_path, None)
    result = registry.gate_version(client, NAME, v2, REGISTRY)
    assert result.decision == contract.GATE_INCONCLUSIVE
    assert "per-buyer test rows cannot be read" in result.reason


def test_rollback_moves_the_champion_to_an_earlier_version_only(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.4, 0.1))
    registry.promote(client, NAME, v1, REGISTRY)
    v2 = _register(client, tmp_path, rows(0.6, 0.2))
    registry.promote(client, NAME, v2, REGISTRY, expected_champion="1")
    assert champion(client) == "2"
    with pytest.raises(registry.RegistryError, match="not earlier than the champion"):
        registry.rollback(client, NAME, "2")
    with pytest.raises(registry.RegistryError, match="has no version '9'"):
        registry.rollback(client, NAME, "9")
    back = registry.rollback(client, NAME, "1")
    assert champion(client) == "1" and back.tags[contract.TAG_PROMOTED_FROM] == "2"


def test_promote_writes_what_it_would_upload_to_vertex(client, tmp_path):
    v1 = _register(client, tmp_path, rows(0.4, 0.1))
    done = registry.promote(
        client, NAME, v1, REGISTRY, upload=(str(tmp_path / "up"), "img:1", "recs")
    )
    import json

    request = json.loads(open(done.upload_request).read())
    assert os.path.basename(done.upload_request) == contract.UPLOAD_REQUEST_FILE
    assert request["artifact_uri"].endswith("/model/artifacts/saved_model")
    spec = request["container_spec"]
    assert spec["imageUri"] == "img:1" and spec["predictRoute"] == contract.DEFAULT_PREDICT_ROUTE
    assert request["labels"] == {"mlflow_model": "recs", "mlflow_version": "1"}


def test_the_gate_decision_is_on_the_run_and_the_report_states_it(client, tracking_uri, tmp_path):
    from pathlib import Path

    from reporting.build import write_report

    v1 = _register(client, tmp_path, rows(0.5, 0.2), job="job-1")
    registry.gate_version(client, NAME, v1, REGISTRY)
    registry.promote(client, NAME, v1, REGISTRY, expected_champion="")
    v2 = _register(client, tmp_path, rows(0.4, 0.2), job="job-<2>")
    registry.gate_version(client, NAME, v2, REGISTRY)
    run = client.get_run(registry.get_version(client, NAME, v2).run_id)
    assert run.data.tags[contract.TAG_GATE_DECISION] == contract.GATE_REJECT
    assert run.data.tags[contract.TAG_GATE_VERSION] == f"{NAME}/{v2}"
    assert run.data.tags[contract.TAG_GATE_CHAMPION] == "1"

    result = write_report(
        tracking_uri, "exp", str(tmp_path / "report"), highlight_pipeline_job="job-<2>"
    )
    dashboard = Path(result.pages[contract.VIEW_DASHBOARD]).read_text(encoding="utf-8")
    banner = dashboard.split('id="gate"', 1)[1].split("</div>", 1)[0]
    assert "REJECT" in banner and f"registered as {NAME}/{v2}" in banner
    assert "against champion version 1" in banner and "lift -" in banner
    summary = result.markdown
    (line,) = [x for x in summary.splitlines() if "Promotion gate:" in x]
    assert line.startswith("**") and "REJECT" in line and f"{NAME}/{v2}" in line
    # The first job's report states its own decision (PROMOTE, no champion then).
    first = write_report(tracking_uri, "exp", str(tmp_path / "r1"), highlight_pipeline_job="job-1")
    page = Path(first.pages[contract.VIEW_DASHBOARD]).read_text(encoding="utf-8")
    assert "PROMOTE" in page.split('id="gate"', 1)[1].split("</div>", 1)[0]
