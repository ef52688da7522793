"""Registered versions: the sweep's winner as a new version, its tags, and the aliases.

Every call takes an open ``MlflowClient`` (``tracking.open_client``): the tracking URI is the
registry URI, as in MLflow's own default. A version's source is the run's ``model`` artifact
folder (an MLflow pyfunc model, ``trainer.serving.save_mlflow_model``), its ``run_id`` the
run's, and its tags the run's configs, seed, pipeline job, protocol key and metrics, so the
registry alone says what a version is and how it was measured.
"""

from __future__ import annotations

import dataclasses
import math

from trainer import contract


class RegistryError(RuntimeError):
    """A registry operation that cannot go ahead; the message names the problem in one line."""


@dataclasses.dataclass(frozen=True)
class Version:
    """One registered model version as the gate reads it."""

    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...] = ()

    @property
    def protocol_key(self) -> str:
        """The protocol key of the run it was registered from ("" when the run had none)."""
        return self.tags.get(contract.TAG_VERSION_PROTOCOL_KEY, "")


# Metrics copied to a version's tags: what it was chosen by, how it did, its intervals.
_METRIC_PREFIXES = ("test_", "best_val_", "chosen_val_", "baseline_", "lift_vs_")


def version_tags(run, pipeline_job: str = "") -> dict[str, str]:
    """A new version's tags from its run: configs, seed, job, protocol key, metrics."""
    params, tags = run.data.params, run.data.tags
    out = {
        contract.TAG_VERSION_RUN_ID: run.info.run_id,
        contract.TAG_VERSION_FEATURE_CONFIG: params.get(contract.PARAM_FEATURE_CONFIG_ID, ""),
        contract.TAG_VERSION_MODEL_CONFIG: params.get(contract.PARAM_MODEL_CONFIG_ID, ""),
        contract.TAG_VERSION_SEED: params.get(contract.PARAM_SEED, ""),
        contract.TAG_VERSION_PIPELINE_JOB: pipeline_job or tags.get(contract.TAG_PIPELINE_JOB, ""),
        contract.TAG_VERSION_PROTOCOL_KEY: tags.get(contract.TAG_PROTOCOL_KEY, ""),
    }
    for key, value in sorted(run.data.metrics.items()):
        if key.startswith(_METRIC_PREFIXES) and math.isfinite(value):
            out[f"{contract.TAG_VERSION_METRIC_PREFIX}{key}"] = repr(float(value))
    return out


def _as_version(mv) -> Version:
    return Version(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        tags=dict(mv.tags or {}),
        aliases=tuple(getattr(mv, "aliases", ()) or ()),
    )


def get_version(client, name: str, version: str) -> Version:
    """The version ``version`` of ``name``; RegistryError when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return _as_version(client.get_model_version(name, str(version)))
    except MlflowException as err:
        raise RegistryError(f"registered model {name!r} has no version {version!r}") from err


def version_by_alias(client, name: str, alias: str) -> Version | None:
    """The version holding ``alias`` (None when no version does, or no such model yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return _as_version(client.get_model_version_by_alias(name, alias))
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def versions_of_run(client, name: str, run_id: str) -> list[Version]:
    """The versions of ``name`` registered from ``run_id`` (oldest first)."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return sorted((_as_version(v) for v in found), key=lambda v: int(v.version))


def _create_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise RegistryError(
                f"MLflow refuses the registered model name {name!r}: {err.message}"
            ) from err


def register_run(client, name: str, run_id: str, pipeline_job: str = "") -> Version:
    """Registers ``run_id``'s MLflow model as a new version of ``name``, alias ``challenger``.

    A retried step finds the version it registered (same run and pipeline job) instead of
    adding a second one.

    Raises:
        RegistryError: the run has no MLflow model, or MLflow refuses the name.
    """
    run = client.get_run(run_id)
    artifact = contract.MLFLOW_MODEL_ARTIFACT
    files = {a.path for a in client.list_artifacts(run_id, artifact)}
    if f"{artifact}/MLmodel" not in files:
        raise RegistryError(
            f"run {run_id} has no MLflow model at artifact path {artifact!r} (trained before "
            "models were logged, or its upload is still in the training's backlog)"
        )
    tags = version_tags(run, pipeline_job)
    job = tags[contract.TAG_VERSION_PIPELINE_JOB]
    again = []
    if _model_exists(client, name):
        again = [
            v
            for v in versions_of_run(client, name, run_id)
            if v.tags.get(contract.TAG_VERSION_PIPELINE_JOB) == job
        ]
    if again:
        version = again[-1]
    else:
        _create_model(client, name)
        mv = client.create_model_version(
            name, f"{run.info.artifact_uri}/{artifact}", run_id=run_id, tags=tags
        )
        version = _as_version(mv)
    client.set_registered_model_alias(name, contract.ALIAS_CHALLENGER, version.version)
    return get_version(client, name, version.version)


def _model_exists(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


def set_tags(client, version: Version, tags: dict[str, str]) -> None:
    """Sets tags on a version (values as MLflow strings)."""
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, str(value))


def move_alias(client, version: Version, alias: str) -> None:
    """Points ``alias`` at ``version`` (MLflow moves it off the version that held it)."""
    client.set_registered_model_alias(version.name, alias, version.version)
