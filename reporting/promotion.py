"""The promotion gate's decision, as the dashboard and the summary state it.

The gate (trainer/registry) tags the challenger's run with its decision (``gate.*``), so the
report finds it among the runs it has read: the highlighted job's judged run, else the run
judged last. Everything shown comes from MLflow and is escaped by the pages.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from reporting.records import RunRecord
from trainer import contract


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """One gate decision read from a run's tags."""

    run: RunRecord
    decision: str
    reason: str
    version: str  # "<model>/<version>"
    champion_version: str
    lift: str  # "+0.0123 [+0.0040, +0.0201] at 100" ("" when the figures hold none)

    def sentence(self) -> str:
        """The decision in one sentence."""
        against = (
            f"against champion version {self.champion_version}"
            if self.champion_version
            else "with no champion yet"
        )
        lift = f", lift {self.lift}" if self.lift else ""
        return (
            f"Promotion gate: {self.run.name} (registered as {self.version or 'a version'}) "
            f"{against}: {self.decision}{lift}. {self.reason}"
        )


def _lift(figures: str) -> str:
    try:
        data = json.loads(figures or "{}")
    except ValueError:
        return ""
    lift = data.get("lift") if isinstance(data, dict) else None
    if not isinstance(lift, dict) or lift.get("value") is None:
        return ""
    low, high = lift.get("low"), lift.get("high")
    interval = f" [{low:+.4f}, {high:+.4f}]" if low is not None and high is not None else ""
    at = f" at {data['k']}" if data.get("k") else ""
    return f"{lift['value']:+.4f}{interval}{at}"


def latest_decision(runs: Sequence[RunRecord], pipeline_job: str = "") -> GateDecision | None:
    """The highlighted job's gate decision, else the last one taken; None when none."""
    judged = [r for r in runs if r.tags.get(contract.TAG_GATE_DECISION)]
    if pipeline_job:
        mine = [r for r in judged if r.tags.get(contract.TAG_PIPELINE_JOB) == pipeline_job]
        judged = mine or judged
    if not judged:
        return None
    run = max(judged, key=lambda r: r.tags.get(contract.TAG_GATE_DECIDED_AT, ""))
    tags = run.tags
    return GateDecision(
        run=run,
        decision=tags[contract.TAG_GATE_DECISION],
        reason=tags.get(contract.TAG_GATE_REASON, ""),
        version=tags.get(contract.TAG_GATE_VERSION, ""),
        champion_version=tags.get(contract.TAG_GATE_CHAMPION, ""),
        lift=_lift(tags.get(contract.TAG_GATE_FIGURES, "")),
    )
