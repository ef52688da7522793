"""The sweep's plan: which transforms and trainings one pipeline run performs.

The face of the wing: everything outside ``trainer.sweep`` imports from here. Standard
library only (besides the config), so planning a sweep imports nothing heavy.
"""

from trainer.sweep.grid import bind_transforms, job_name, plan, run_key

__all__ = ["bind_transforms", "job_name", "plan", "run_key"]
