"""The report's golden files: fixed scenarios on the standard sweep, and a normaliser.

A report rendered from the standard sweep (``mlflow_runs.populate_sweep``: fixed start times,
fixed values) is the same every time except for what no code change should be judged by:
run ids (random UUIDs), the store's folder, the generation time and matplotlib's per-chart
element ids (a process-wide counter salts them). :func:`normalise` replaces exactly those;
everything else must match the files under ``golden/`` byte for byte.

``test_golden.py`` checks it; ``bench/report_identity.py`` renders any commit's code the same
way, so a refactor can be diffed against the code before it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

# Scenario name -> options; "highlight" and "compare" name runs of the sweep (ids differ per
# store), "compare" may name a run that does not exist.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {"ui_url": "https://mlflow.example.com/", "highlight": "ids-large"},
    "loss_compare": {
        "rank_metric": "final_val_loss",
        "compare": ["ids-small-s1", "failed", "deadbeef"],
        "detail_runs": 2,
    },
    "recall10_top3": {"rank_metric": "test_recall_at_10", "top_n": 3, "detail_runs": 0},
    # Nothing listens on port 9 (discard): the pages that say MLflow was unreachable.
    "unreachable": {"tracking_uri": "http://127.0.0.1:9", "fail_on_unreachable": False},
}

# Object reprs in error messages carry memory addresses.
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_GENERATED = re.compile(r"<dt>Generated</dt><dd>[^<]*</dd>")
# matplotlib's SVG element ids: clip paths (p...), markers (m...) and images (image...), each
# with 10 hex digits.
_SVG_ID = re.compile(r"\b(p|m|image)[0-9a-f]{10}\b")
# Charts and the layout's style sheet and script: long, and unreadable in a diff.
_BLOB = re.compile(r"<(svg|style|script)\b.*?</\1>", re.DOTALL)


def options(scenario: str, tracking_uri: str, ids: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(tracking URI, keyword arguments) of the report function for ``scenario``.

    Args:
        scenario: A key of :data:`SCENARIOS`.
        tracking_uri: The sweep's store, used unless the scenario names another URI.
        ids: Run name -> run id of the sweep.
    """
    spec = dict(SCENARIOS[scenario])
    tracking_uri = spec.pop("tracking_uri", tracking_uri)
    kwargs: dict[str, Any] = {}
    if "highlight" in spec:
        kwargs["highlight_run_id"] = ids[spec.pop("highlight")]
    if "compare" in spec:
        kwargs["compare_run_ids"] = [ids.get(name, name) for name in spec.pop("compare")]
    kwargs.update(spec)
    return tracking_uri, kwargs


def normalise(text: str, ids: dict[str, str], store_dir: str, hash_blobs: bool = False) -> str:
    """Replace what differs between two renders of the same sweep by stable placeholders.

    Args:
        text: A page, the summary or the metrics.
        ids: Run name -> run id of the sweep.
        store_dir: The sweep store's folder.
        hash_blobs: Replace each chart (``<svg>``), ``<style>`` and ``<script>`` element by
            the SHA-256 of its normalised text, so golden files stay small and readable while
            any change to them still shows.
    """
    for name, run_id in ids.items():
        text = text.replace(run_id, f"RUN-{name}")
    text = text.replace(store_dir, "STORE")
    text = _ADDRESS.sub(" at 0x0", text)
    text = _GENERATED.sub("<dt>Generated</dt><dd>GENERATED</dd>", text)
    seen: dict[str, str] = {}

    def stable(m: re.Match) -> str:
        return seen.setdefault(m[0], f"{m[1]}id{len(seen):05d}")

    text = _SVG_ID.sub(stable, text)
    if hash_blobs:
        text = _BLOB.sub(
            lambda m: f"<{m[1]} sha256={hashlib.sha256(m[0].encode()).hexdigest()}/>", text
        )
    return text


def files_of(pages: dict[str, str], markdown: str, metrics: dict[str, float]) -> dict[str, str]:
    """A report's outputs as file name -> text: every page, the summary and the metrics."""
    out = {Path(path).name: Path(path).read_text(encoding="utf-8") for path in pages.values()}
    out["summary.md"] = markdown
    out["metrics.json"] = json.dumps(metrics, indent=1, sort_keys=True) + "\n"
    return out
