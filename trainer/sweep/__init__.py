"""The sweep's plan: which transforms and trainings one pipeline run performs.

The face of the wing: everything outside ``trainer.sweep`` imports from here. ``grid`` plans
the trainings and their run keys; ``halving`` what each successive-halving rung stage trains
and who goes on (it reads MLflow only when a rung is judged). Standard library only at import
(besides the config), so planning a sweep imports nothing heavy.
"""

from trainer.sweep.grid import bind_transforms, job_name, plan, run_key
from trainer.sweep.halving import RESUME_FROM, RUNG, RungStagesError, advance, select, stage_rungs

__all__ = [
    "RESUME_FROM",
    "RUNG",
    "RungStagesError",
    "advance",
    "bind_transforms",
    "job_name",
    "plan",
    "run_key",
    "select",
    "stage_rungs",
]
