"""Step records: each step's wall time and machine, written beside its output, and a run's cost."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence

from trainer import contract
from trainer.cost.machine import Machine, detect_machine
from trainer.cost.prices import PriceTable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """One execution of a step: its wall seconds, its machine and an id of that execution."""

    step: str
    seconds: float
    machine: Machine
    execution: str

    def to_json(self) -> dict:
        """The record as written to ``contract.STEP_RECORD_FILE``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> StepRecord:
        """The record read back."""
        return cls(
            step=str(data["step"]),
            seconds=float(data["seconds"]),
            machine=Machine(**data["machine"]),
            execution=str(data["execution"]),
        )


def write_record(folder: str, record: StepRecord) -> str:
    """Writes ``record`` into the step's output folder; returns the file's path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, contract.STEP_RECORD_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record.to_json(), f, indent=2)
    return path


class StepTimer:
    """Times one step from its creation; ``stop`` records it (``record`` is then set)."""

    def __init__(self, step: str, environ: Mapping[str, str] | None = None):
        self.step, self.environ = step, environ
        self.started = time.monotonic()
        self.record: StepRecord | None = None

    def stop(self, folder: str = "", carried_from: str = "") -> StepRecord:
        """Records the step (into ``folder`` when given); returns the record.

        With ``carried_from`` (an earlier rung's output folder) its seconds are added
        (:func:`carry_on`).
        """
        self.record = StepRecord(
            step=self.step,
            seconds=round(time.monotonic() - self.started, 3),
            machine=detect_machine(self.environ),
            execution=uuid.uuid4().hex,
        )
        if carried_from:
            self.record = carry_on(self.record, carried_from)
        if folder:
            write_record(folder, self.record)
        log.info("%s: %.1f s on %s", self.step, self.record.seconds, self.record.machine)
        return self.record


@contextlib.contextmanager
def measure(
    step: str, folder: str = "", environ: Mapping[str, str] | None = None
) -> Iterator[StepTimer]:
    """Times a step's work; on success records it into its output ``folder``.

    A failed step writes nothing: its output folder is not used, and a retry writes its own.
    """
    timer = StepTimer(step, environ)
    yield timer
    timer.stop(folder)


def local_folder(uri: str) -> str:
    """A path a step can open for an output folder's URI (Vertex mounts GCS under /gcs/)."""
    if uri.startswith("gs://"):
        return "/gcs/" + uri[len("gs://") :]
    return uri


def carry_on(record: StepRecord, previous_folder: str) -> StepRecord:
    """``record`` with the seconds of the record in ``previous_folder`` added (none: as is).

    A halving trial trains rung by rung, each rung a task with its own output folder; the
    last rung's record, which the evaluate step reads, must cover every rung. The rungs of a
    trial run on the machine the pipeline gives its trainings, so the sum is priced at this
    record's machine; a previous rung on another machine is said in the log.
    """
    previous_folder = local_folder(previous_folder)
    path = os.path.join(previous_folder, contract.STEP_RECORD_FILE) if previous_folder else ""
    if not path or not os.path.exists(path):
        if previous_folder:
            log.warning(
                "no %s in %s: the earlier rungs' time is not counted", path, previous_folder
            )
        return record
    with open(path, encoding="utf-8") as f:
        previous = StepRecord.from_json(json.load(f))
    if previous.machine != record.machine:
        log.warning(
            "the earlier rungs ran on %s, this one on %s: all priced as this one",
            previous.machine,
            record.machine,
        )
    return dataclasses.replace(record, seconds=round(record.seconds + previous.seconds, 3))


def read_records(folders: Sequence[str]) -> list[StepRecord]:
    """The records found in the steps' output folders (an older output without one is skipped)."""
    records = []
    for folder in folders:
        path = os.path.join(folder, contract.STEP_RECORD_FILE)
        if not os.path.exists(path):
            log.warning(
                "no %s in %s: that step's cost is unknown", contract.STEP_RECORD_FILE, folder
            )
            continue
        with open(path, encoding="utf-8") as f:
            records.append(StepRecord.from_json(json.load(f)))
    return records


def _step_figures(record: StepRecord, usd: float) -> tuple[dict[str, float], dict[str, str]]:
    step, machine = record.step, record.machine
    metrics = {
        contract.cost_seconds_key(step): record.seconds,
        contract.cost_usd_key(step): round(usd, 6),
        contract.cost_vcpus_key(step): machine.vcpus,
        contract.cost_accelerator_count_key(step): float(machine.accelerator_count),
    }
    tags = {
        contract.cost_machine_tag(step): machine.machine_type,
        contract.cost_scheduling_tag(step): machine.scheduling,
        contract.cost_execution_tag(step): record.execution,
    }
    if machine.accelerator_type:
        tags[contract.cost_accelerator_tag(step)] = machine.accelerator_type
    return metrics, tags


def run_cost(
    records: Sequence[StepRecord], prices: PriceTable
) -> tuple[dict[str, float], dict[str, str]]:
    """A run's cost metrics and tags (``contract``'s cost names) from its steps' records.

    Every step gets its seconds, machine and estimated cost (a shared step's whole cost, with
    its execution id, which the report divides among the runs that share it); the run gets
    ``COST_USD`` and ``COST_MACHINE_SECONDS`` of its own steps (train, evaluate) and
    ``TAG_COST_PRICES`` naming the table (and what it has no price for).
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    own_usd = own_seconds = 0.0
    missing: list[str] = []
    for record in records:
        hourly, unpriced = prices.hourly(record.machine)
        missing += unpriced
        usd = hourly * record.seconds / 3600
        step_metrics, step_tags = _step_figures(record, usd)
        metrics.update(step_metrics)
        tags.update(step_tags)
        if record.step in contract.OWN_STEPS:
            own_usd, own_seconds = own_usd + usd, own_seconds + record.seconds
    if any(r.step in contract.OWN_STEPS for r in records):
        metrics[contract.COST_USD] = round(own_usd, 6)
        metrics[contract.COST_MACHINE_SECONDS] = round(own_seconds, 3)
    note = f"; no price for {', '.join(sorted(set(missing)))} (counted 0)" if missing else ""
    unrecorded = [s for s in contract.COST_STEPS if s not in {r.step for r in records}]
    if unrecorded:  # an output written before steps recorded themselves, or a step that never does
        note += f"; no record of {', '.join(unrecorded)} (not counted)"
    tags[contract.TAG_COST_PRICES] = prices.describe() + note
    return metrics, tags
