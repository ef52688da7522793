"""Fixtures of the pipelines tests (defined in fakes.py, next to the fakes they use)."""

from tests.unit.pipelines.fakes import captured  # noqa: F401 (a fixture, found by name)
