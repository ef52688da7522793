"""Comparable runs only: the reference protocol of a report and the runs that do not share it.

Each evaluated run carries a protocol key and its parts as tags (``contract.PROTOCOL_PARTS``:
data digest, split, catalog size, evaluation protocol). The report ranks, tests and fills the
heatmap only among runs with the reference key: that of the highlighted job's runs, else of
the highlighted run, else of the latest run that has one. Finished runs with another key, or
with none (older runs, or runs whose evaluation did not tag them), are listed apart with the
part that differs. Unfinished runs without a key stay with the others, unranked as before.
When no run has a key at all, every run is compared, and the report says it is unchecked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reporting.records import RunRecord
from trainer import contract

# The parts' names on the pages.
PART_LABELS = {
    contract.TAG_PROTOCOL_DATASET: "dataset",
    contract.TAG_PROTOCOL_SPLIT: "split",
    contract.TAG_PROTOCOL_CATALOG: "catalog size",
    contract.TAG_PROTOCOL_EVALUATION: "evaluation",
}


@dataclasses.dataclass(frozen=True)
class Reference:
    """The protocol runs are compared under, and where it was taken from."""

    key: str
    parts: dict[str, str]
    source: str  # "this pipeline job", "this run", "the latest run"

    def describe(self) -> str:
        """The parts for a sentence: ``dataset 41:..., split strict_time ..., ...``."""
        return ", ".join(f"{PART_LABELS[p]} {self.parts.get(p, '?')}" for p in PART_LABELS)


@dataclasses.dataclass(frozen=True)
class Apart:
    """A run left out of the comparison, and why (the part that differs, or no key)."""

    run: RunRecord
    reason: str


def key_of(run: RunRecord) -> str:
    """The run's protocol key ("" when it logged none)."""
    return run.tags.get(contract.TAG_PROTOCOL_KEY, "")


def reference(
    runs: Sequence[RunRecord], highlight_pipeline_job: str = "", highlight_run_id: str = ""
) -> Reference | None:
    """The reference protocol: the highlighted job's, the highlighted run's, or the latest's."""
    keyed = sorted((r for r in runs if key_of(r)), key=lambda r: (-r.start_time, r.name))
    choices = (
        ("this pipeline job", highlight_pipeline_job and [
            r for r in keyed if r.pipeline_job == highlight_pipeline_job
        ]),
        ("this run", highlight_run_id and [r for r in keyed if r.run_id == highlight_run_id]),
        ("the latest run", keyed),
    )  # fmt: skip
    for source, candidates in choices:
        if candidates:
            run = candidates[0]
            parts = {p: run.tags.get(p, "") for p in contract.PROTOCOL_PARTS}
            return Reference(key_of(run), parts, source)
    return None


def difference(run: RunRecord, ref: Reference) -> str:
    """Why ``run`` is not comparable with ``ref``: the parts that differ, or no key."""
    if not key_of(run):
        return "no protocol key (logged before protocol keys, or its evaluation did not run)"
    differ = [
        f"{PART_LABELS[p]} {run.tags.get(p, '') or '?'} (compared: {ref.parts.get(p) or '?'})"
        for p in contract.PROTOCOL_PARTS
        if run.tags.get(p, "") != ref.parts.get(p, "")
    ]
    return "; ".join(differ) or f"protocol key {key_of(run)} (compared: {ref.key})"


def split_comparable(
    runs: Sequence[RunRecord], ref: Reference | None
) -> tuple[list[RunRecord], list[Apart]]:
    """(runs compared under ``ref``, runs listed apart with the reason), in the given order."""
    if ref is None:
        return list(runs), []
    compared, apart = [], []
    for run in runs:
        key = key_of(run)
        if key == ref.key or (not key and run.status != contract.STATUS_FINISHED):
            compared.append(run)
        else:
            apart.append(Apart(run, difference(run, ref)))
    return compared, apart
