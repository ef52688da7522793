"""Registry (the pipeline's Pusher): the sweep's winner in the MLflow Model Registry, the gate.

The face of the wing: everything outside ``trainer.registry`` imports from here. ``versions``
registers a run's MLflow model as a new version (tags: run, configs, seed, pipeline job,
protocol key, metrics; alias ``challenger``) and reads and moves aliases; ``gate`` decides
PROMOTE / REJECT / INCONCLUSIVE from two models' per-buyer test rows with the paired bootstrap;
``promote`` reads both sides from MLflow (evaluating the champion again on the challenger's
split when their protocols differ), tags the decision, moves ``champion`` after reading it
again, and rolls back by hand. Every call takes an open MLflow client
(``trainer.tracking.open_client``).
"""

from trainer.registry.gate import GateResult, SliceResult, decide
from trainer.registry.promote import (
    Promotion,
    decide_against,
    gate_version,
    predictor_container,
    promote,
    rollback,
    upload_request,
)
from trainer.registry.versions import (
    RegistryError,
    Version,
    get_version,
    register_run,
    version_by_alias,
)

__all__ = [
    "GateResult",
    "Promotion",
    "RegistryError",
    "SliceResult",
    "Version",
    "decide",
    "decide_against",
    "gate_version",
    "get_version",
    "predictor_container",
    "promote",
    "register_run",
    "rollback",
    "upload_request",
    "version_by_alias",
]
