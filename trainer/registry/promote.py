"""Gate and promotion of a registered version: read both sides, decide, tag, move the alias.

``gate_version`` reads the challenger's and the champion's per-buyer test rows from their
runs (``evaluation/per_buyer_test.parquet``) and decides (``gate.decide``). When the two runs
carry different protocol keys their rows are other buyers or other splits, so the champion's
model is evaluated again on the challenger's test split (the ingest folder given as
``examples_dir``, which must be the challenger's: its protocol key is checked) with the
evaluate step's own code; without that folder, or with a champion whose model cannot be
loaded, the decision is INCONCLUSIVE with the reason. The decision and its figures go to the
challenger version's tags.

``promote`` moves ``champion`` only after reading the champion again: if another sweep moved
it since the gate ran, the gate runs again against the new champion and the alias moves only
on a new PROMOTE. (MLflow has no compare-and-set on aliases: the window left is the one
between that read and the write, milliseconds instead of a whole gate.) ``rollback`` moves
``champion`` to an earlier version by hand. Nothing here moves an alias after an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import tempfile

import pandas as pd

from trainer import config as cfg
from trainer import contract, evaluate, inputs, layout
from trainer.registry import gate, versions
from trainer.registry.versions import RegistryError, Version

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Promotion:
    """What ``promote`` did: the decision it acted on and the champion after it."""

    result: gate.GateResult
    champion_version: str  # after the call
    moved: bool
    upload_request: str = ""  # path of what would be uploaded to Vertex (locally)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_rows(client, run_id: str, folder: str) -> pd.DataFrame:
    """The served model's per-buyer test rows logged by ``run_id``'s evaluation."""
    path = client.download_artifacts(
        run_id, f"{contract.EVALUATION_ARTIFACT_DIR}/{contract.PER_BUYER_TEST_FILE}", folder
    )
    rows = pd.read_parquet(path)
    return rows[rows[contract.SCORER] == contract.SCORER_MODEL].reset_index(drop=True)


def _model_folder(client, run_id: str, folder: str) -> str:
    """A train-step-like folder (serving/ and experiment.yaml) from a run's artifacts."""
    os.makedirs(folder, exist_ok=True)
    saved = client.download_artifacts(
        run_id,
        f"{contract.MLFLOW_MODEL_ARTIFACT}/artifacts/{contract.MLFLOW_MODEL_SAVED_MODEL}",
        folder,
    )
    shutil.move(saved, layout.serving_path(folder))
    client.download_artifacts(run_id, contract.CONFIG_FILE, folder)
    return folder


def champion_rows_on(client, champion: Version, examples_dir: str, folder: str) -> pd.DataFrame:
    """The champion's model evaluated on the test split of ``examples_dir``."""
    model_dir = _model_folder(client, champion.run_id, os.path.join(folder, "champion"))
    config = cfg.load_config(layout.config_path(model_dir))
    # Only the exported model is scored: its own refit history does not matter here.
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, refit=False))
    data = evaluate.EvaluationData.load(examples_dir)
    out = os.path.join(folder, "out")  # the evaluate step's top-k file lands here, unused
    os.makedirs(out, exist_ok=True)
    rows, _ = evaluate.rows_on_test(model_dir, config, data, out)
    return rows[contract.SCORER_MODEL]


def _run_config(client, run_id: str, folder: str) -> cfg.ExperimentConfig:
    path = client.download_artifacts(run_id, contract.CONFIG_FILE, folder)
    return cfg.load_config(path)


def _examples_key(examples_dir: str, config: cfg.ExperimentConfig) -> str:
    """The protocol key of an ingest folder's splits as ``config`` evaluates them."""
    data = evaluate.EvaluationData.load(examples_dir)
    tags = inputs.protocol_tags(config, [data.train, data.eval, data.test], data.catalog)
    return tags[contract.TAG_PROTOCOL_KEY]


def _evaluation_part(client, run_id: str) -> str:
    return client.get_run(run_id).data.tags.get(contract.TAG_PROTOCOL_EVALUATION, "")


def _champion_rows(client, challenger: Version, champion: Version, examples_dir: str, folder):
    """The champion's rows on the challenger's test buyers, or why there are none."""
    ours, theirs = challenger.protocol_key, champion.protocol_key
    if ours and ours == theirs:
        return test_rows(client, champion.run_id, folder)
    what = f"champion version {champion.version} (run {champion.run_id})"
    if _evaluation_part(client, challenger.run_id) != _evaluation_part(client, champion.run_id):
        return f"{what} was evaluated under another evaluation protocol (pairs evaluated)"
    if not examples_dir:
        return (
            f"{what} has protocol key {theirs or 'none'}, the challenger {ours or 'none'}: its "
            "test split cannot be rebuilt without the challenger's ingest folder (--examples)"
        )
    config = _run_config(client, challenger.run_id, folder)
    if ours and _examples_key(examples_dir, config) != ours:
        return f"{examples_dir} is not the challenger's split (protocol key {ours})"
    try:
        return champion_rows_on(client, champion, examples_dir, folder)
    except Exception as err:  # any failure to load or run the old model: INCONCLUSIVE, said
        log.exception("the champion could not be evaluated on the challenger's split")
        return f"{what} cannot be evaluated on the challenger's split: {type(err).__name__}: {err}"


def decide_against(
    client,
    challenger: Version,
    champion: Version | None,
    registry: cfg.Registry,
    examples_dir: str = "",
) -> gate.GateResult:
    """The gate's decision for ``challenger`` against ``champion`` (None: no champion)."""
    k, tolerance = registry.gate_k, registry.slice_tolerance
    if champion is None:
        return gate.no_champion(k, tolerance)
    if champion.version == challenger.version:
        return gate.inconclusive(
            f"version {challenger.version} already holds {contract.ALIAS_CHAMPION}",
            k,
            tolerance,
            champion.version,
        )
    with tempfile.TemporaryDirectory(prefix="gate-") as folder:
        try:
            ours = test_rows(client, challenger.run_id, os.path.join(folder, "challenger"))
        except Exception as err:  # no rows, no decision: said, never raised past the gate
            return gate.inconclusive(
                f"the challenger's per-buyer test rows cannot be read: {type(err).__name__}: {err}",
                k,
                tolerance,
                champion.version,
            )
        try:
            theirs = _champion_rows(client, challenger, champion, examples_dir, folder)
        except Exception as err:
            theirs = (
                f"the champion's per-buyer test rows cannot be read: {type(err).__name__}: {err}"
            )
    if isinstance(theirs, str):
        return gate.inconclusive(theirs, k, tolerance, champion.version)
    return gate.decide(ours, theirs, k, tolerance, champion.version)


def record(client, challenger: Version, result: gate.GateResult) -> None:
    """The decision, its reason and figures on the challenger version's tags and its run's."""
    tags = {**result.tags(), contract.TAG_GATE_DECIDED_AT: _now()}
    versions.set_tags(client, challenger, tags)
    if challenger.run_id:  # what the report reads (it reads runs, not the registry)
        from mlflow.entities import RunTag

        tags[contract.TAG_GATE_VERSION] = f"{challenger.name}/{challenger.version}"
        client.log_batch(challenger.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def gate_version(
    client, name: str, version: str, registry: cfg.Registry, examples_dir: str = ""
) -> gate.GateResult:
    """Runs the gate for ``version`` of ``name`` against the current champion; tags the version."""
    challenger = versions.get_version(client, name, version)
    champion = versions.version_by_alias(client, name, contract.ALIAS_CHAMPION)
    result = decide_against(client, challenger, champion, registry, examples_dir)
    record(client, challenger, result)
    log.info("gate: version %s: %s", version, result.line())
    return result


def upload_request(challenger: Version, source: str, image: str, display_name: str) -> dict:
    """What goes to the Vertex Model Registry for a promoted version (ModelUploadOp's inputs)."""
    return {
        "display_name": display_name,
        "artifact_uri": f"{source}/artifacts/{contract.MLFLOW_MODEL_SAVED_MODEL}",
        "container_spec": predictor_container(image),
        "labels": {"mlflow_model": _label(challenger.name), "mlflow_version": challenger.version},
        "description": f"MLflow {challenger.name} version {challenger.version} "
        f"(run {challenger.run_id})",
    }


def predictor_container(image: str) -> dict:
    """The serving container: the component image running trainer/serving/predictor.py.

    Vertex sets AIP_HTTP_PORT, AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE and AIP_STORAGE_URI (a copy
    of artifact_uri) in the container; the routes given here are the ones it sends to
    (https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements).
    Vertex's prebuilt TensorFlow serving images carry older TensorFlow than the 2.21 this
    SavedModel is written with, hence our own predictor. Keys are the REST API's camelCase
    (GCPC's upload launcher converts them: ``append_unmanaged_model_artifact_into_payload`` in
    google_cloud_pipeline_components/container/v1/model/upload_model/remote_runner.py).
    """
    return {
        "imageUri": image,
        "command": ["python", "-m", "trainer.serving.predictor"],
        # A string: in a compiled spec KFP writes metadata as a protobuf Struct, whose numbers
        # are doubles (8080.0), and the upload goes to Vertex as JSON; the proto3 JSON mapping
        # accepts a string for an int32 field (https://protobuf.dev/programming-guides/json/).
        "ports": [{"containerPort": str(contract.DEFAULT_PREDICTOR_PORT)}],
        "predictRoute": contract.DEFAULT_PREDICT_ROUTE,
        "healthRoute": contract.DEFAULT_HEALTH_ROUTE,
    }


def _label(value: str) -> str:
    """A GCP label value: lowercase letters, digits, - and _, at most 63 characters."""
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())
    return out[:63]


def promote(
    client,
    name: str,
    version: str,
    registry: cfg.Registry,
    expected_champion: str = "",
    examples_dir: str = "",
    upload: tuple[str, str, str] | None = None,
) -> Promotion:
    """Moves ``champion`` to ``version`` if the gate still says PROMOTE against the champion now.

    Args:
        client: An MLflow client.
        name: The registered model.
        version: The challenger version (the gate said PROMOTE for it).
        registry: The experiment's registry section (k and tolerance for a new decision).
        expected_champion: The champion version the gate compared with ("" for none).
        examples_dir: The challenger's ingest folder (a new champion of another protocol).
        upload: (folder, serving image, display name): write the Vertex upload request there.
    """
    challenger = versions.get_version(client, name, version)
    champion = versions.version_by_alias(client, name, contract.ALIAS_CHAMPION)
    current = champion.version if champion else ""
    result = None
    if current != expected_champion:
        log.warning(
            "champion moved from %r to %r since the gate ran: deciding again",
            expected_champion,
            current,
        )
        result = decide_against(client, challenger, champion, registry, examples_dir)
        record(client, challenger, result)
    if result is None:
        result = gate.GateResult(
            contract.GATE_PROMOTE,
            challenger.tags.get(contract.TAG_GATE_REASON, "promoted"),
            registry.gate_k,
            registry.slice_tolerance,
            current,
        )
    if result.decision != contract.GATE_PROMOTE:
        return Promotion(result, current, moved=False)
    path = ""
    if upload:
        folder, image, display_name = upload
        mv = client.get_model_version(name, version)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, contract.UPLOAD_REQUEST_FILE)
        request = upload_request(challenger, mv.source, image, display_name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(request, f, indent=2, sort_keys=True)
    versions.move_alias(client, challenger, contract.ALIAS_CHAMPION)
    versions.set_tags(
        client,
        challenger,
        {contract.TAG_PROMOTED_AT: _now(), contract.TAG_PROMOTED_FROM: current},
    )
    log.info(
        "promoted %s version %s to %s (was %r)", name, version, contract.ALIAS_CHAMPION, current
    )
    return Promotion(result, version, moved=True, upload_request=path)


def rollback(client, name: str, version: str) -> Version:
    """Moves ``champion`` back to an earlier ``version`` (no gate: a deliberate choice).

    Raises:
        RegistryError: no such version, or it is not earlier than the current champion.
    """
    target = versions.get_version(client, name, version)
    champion = versions.version_by_alias(client, name, contract.ALIAS_CHAMPION)
    if champion is not None and int(target.version) >= int(champion.version):
        raise RegistryError(
            f"version {version} is not earlier than the champion (version {champion.version}); "
            "use promote to move it forward"
        )
    versions.move_alias(client, target, contract.ALIAS_CHAMPION)
    versions.set_tags(
        client,
        target,
        {
            contract.TAG_PROMOTED_AT: _now(),
            contract.TAG_PROMOTED_FROM: champion.version if champion else "",
        },
    )
    return versions.get_version(client, name, version)
