"""Cost: what each step ran on, for how long, and an estimate of what that cost.

The face of the wing: everything outside ``trainer.cost`` imports from here. ``measure`` (a
``StepTimer``) times a step and writes its record (``contract.STEP_RECORD_FILE``) into the
step's output folder; ``read_records`` collects a run's records from its steps' folders;
``run_cost`` turns them into the run's cost metrics and tags with a ``PriceTable``
(``load_prices``: the packaged prices.yaml with an environment file's overrides, checked by
``check_overrides``); ``detect_machine`` says what the step runs on; ``with_run_labels`` adds
the pipeline run's labels (the billing id among them) to a Dataflow job's Beam options.
Standard library only (PyYAML where the packaged table is read): nothing here reaches the
network.
"""

from trainer.cost.labels import run_labels, with_run_labels
from trainer.cost.machine import Machine, cgroup_vcpus, detect_machine
from trainer.cost.prices import PriceError, PriceTable, check_overrides, load_prices
from trainer.cost.steps import (
    StepRecord,
    StepTimer,
    carry_on,
    local_folder,
    measure,
    read_records,
    run_cost,
    write_record,
)

__all__ = [
    "Machine",
    "PriceError",
    "PriceTable",
    "StepRecord",
    "StepTimer",
    "cgroup_vcpus",
    "check_overrides",
    "detect_machine",
    "load_prices",
    "carry_on",
    "local_folder",
    "measure",
    "read_records",
    "run_cost",
    "run_labels",
    "with_run_labels",
    "write_record",
]
