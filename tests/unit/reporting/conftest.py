"""Fixtures: real MLflow runs in a throwaway SQLite store, never a mock."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.unit.reporting.mlflow_runs import (
    EVIL,
    EVIL_KEY,
    EXPERIMENT,
    Sweep,
    log_run,
    populate_sweep,
    standard_history,
)


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow SQLite database (migrating takes seconds; copying doesn't)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(_empty_store, tmp_path) -> str:
    """A fresh embedded MLflow SQLite store (a copy of the migrated empty one)."""
    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture(scope="session")
def sweep_store(_empty_store, tmp_path_factory) -> Sweep:
    """The standard sweep, logged once per test session (read-only for tests)."""
    path = tmp_path_factory.mktemp("sweep")
    shutil.copy(_empty_store, path / "mlflow.db")
    return populate_sweep(f"sqlite:///{path}/mlflow.db")


@pytest.fixture(scope="session")
def sweep_report(sweep_store, tmp_path_factory):
    """The report of the standard sweep with default options, rendered once."""
    from reporting.build import write_report

    out = tmp_path_factory.mktemp("report")
    result = write_report(
        sweep_store.tracking_uri,
        EXPERIMENT,
        str(out),
        ui_url="https://mlflow.example.com/",
        highlight_run_id=sweep_store.ids["ids-large"],
    )
    return result


@pytest.fixture(scope="session")
def fx() -> types.SimpleNamespace:
    """The helpers above for test modules (importlib mode: conftest is not importable)."""
    return types.SimpleNamespace(
        EVIL=EVIL,
        EVIL_KEY=EVIL_KEY,
        EXPERIMENT=EXPERIMENT,
        log_run=log_run,
        populate_sweep=populate_sweep,
        standard_history=standard_history,
    )
