"""Shared fixtures: a throwaway MLflow store per test, never a mock."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture
def tracking_uri(tmp_path):
    """A fresh embedded MLflow SQLite store."""
    return f"sqlite:///{tmp_path}/mlflow.db"
