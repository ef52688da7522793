"""The report is byte-identical to its golden files, up to what :mod:`golden` normalises.

The golden files under ``golden/`` were rendered by the code before the reporting split
(commit ba1f252) and after it, identically; changes since, each on purpose: the xlink
namespace each chart declares; MLflow strings in <bdi> (FSI/PDI in Markdown); single views
without links to sibling files; failed runs' reasons, degraded-tracking and job counts on the
dashboard and in the metrics; NaN/inf shown as such; ranked on validation by default and the
protocol note, heatmap intervals, "no interval" marks and the lift in the
decision (issue 23); the leaderboard's cost column, its "no cost" marks and the note that
no run logged a cost (issue 26). After an intended change to the pages, rewrite them with
``UPDATE_GOLDEN=1 pytest tests/unit/reporting/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reporting.build import write_report
from tests.unit.reporting import golden
from tests.unit.reporting.mlflow_runs import EXPERIMENT


@pytest.mark.parametrize("scenario", sorted(golden.SCENARIOS))
def test_report_matches_golden_files(scenario, sweep_store, tmp_path):
    uri, kwargs = golden.options(scenario, sweep_store.tracking_uri, sweep_store.ids)
    result = write_report(uri, EXPERIMENT, str(tmp_path), **kwargs)
    store_dir = str(Path(sweep_store.tracking_uri.removeprefix("sqlite:///")).parent)
    got = {
        name: golden.normalise(text, sweep_store.ids, store_dir, hash_blobs=True)
        for name, text in golden.files_of(result.pages, result.markdown, result.metrics).items()
    }
    folder = golden.GOLDEN_DIR / scenario
    if os.environ.get("UPDATE_GOLDEN"):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, text in got.items():
            (folder / name).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}
    assert sorted(got) == sorted(expected)
    for name, text in got.items():
        assert text == expected[name], f"{scenario}/{name} differs from its golden file"


def test_normalise_replaces_only_what_differs_between_renders():
    ids = {"a": "0123456789abcdef0123456789abcdef"}
    page = (
        '<tr data-run-id="0123456789abcdef0123456789abcdef"><td>/tmp/x/mlflow.db</td>'
        "<dt>Generated</dt><dd>2026-01-01 10:00 UTC</dd>"
        '<svg><clipPath id="p0123456789"/><use xlink:href="#m9876543210"/>'
        '<g clip-path="url(#p0123456789)"/><image id="image0a1b2c3d4e"/></svg> 0.3200'
    )
    out = golden.normalise(page, ids, "/tmp/x")
    assert out == (
        '<tr data-run-id="RUN-a"><td>STORE/mlflow.db</td>'
        "<dt>Generated</dt><dd>GENERATED</dd>"
        '<svg><clipPath id="pid00000"/><use xlink:href="#mid00001"/>'
        '<g clip-path="url(#pid00000)"/><image id="imageid00002"/></svg> 0.3200'
    )
    hashed = golden.normalise(page, ids, "/tmp/x", hash_blobs=True)
    assert "<svg sha256=" in hashed and "clipPath" not in hashed
    # A changed chart changes its hash.
    other = golden.normalise(page.replace("<g ", "<g stroke='red' "), ids, "/tmp/x", True)
    assert other != hashed
