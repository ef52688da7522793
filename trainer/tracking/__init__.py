"""MLflow tracking: the one adapter between the product and an MLflow store or server.

The face of the wing: everything outside ``trainer.tracking`` imports from here. ``tracker``
is ``RunTracker`` (a training's or evaluation's run, its queue and its outage handling),
``send`` opens clients and sends batches, ``backlog`` keeps what could not be sent on disk
and replays it, ``liveness`` says when a run was last heard from and whether it is lost,
``lost`` ends lost runs FAILED (RUNNING runs whose process died), ``uri`` is ``TrackingUri``
(the one parsed form of a tracking URI that every package uses), ``auth`` is the MLflow
plugin that adds a Google ID token for a private Cloud Run server (registered as the
``mlflow.request_header_provider`` entry point).
"""

from trainer.tracking.auth import GoogleIdTokenHeaderProvider
from trainer.tracking.backlog import replay, unsent_lines, update_run_info
from trainer.tracking.liveness import lost_reason, lost_since, stamp
from trainer.tracking.lost import LostRun, end_lost_runs
from trainer.tracking.send import is_transient, open_client
from trainer.tracking.tracker import RunTracker, read_run_info
from trainer.tracking.uri import TrackingUri

__all__ = [
    "GoogleIdTokenHeaderProvider",
    "LostRun",
    "RunTracker",
    "TrackingUri",
    "end_lost_runs",
    "is_transient",
    "lost_reason",
    "lost_since",
    "open_client",
    "read_run_info",
    "replay",
    "stamp",
    "unsent_lines",
    "update_run_info",
]
