"""MLflow tracking: the one adapter between the product and an MLflow store or server.

The face of the wing: everything outside ``trainer.tracking`` imports from here. ``tracker``
is ``RunTracker`` (a training's or evaluation's run, its queue and its outage handling),
``send`` opens clients and sends batches, ``backlog`` keeps what could not be sent on disk
and replays it, ``uri`` is ``TrackingUri`` (the one parsed form of a tracking URI that
every package uses), ``auth`` is the MLflow plugin that adds a Google ID token for a private
Cloud Run server (registered as the ``mlflow.request_header_provider`` entry point).
"""

from trainer.tracking.auth import GoogleIdTokenHeaderProvider
from trainer.tracking.backlog import replay, update_run_info
from trainer.tracking.send import is_transient, open_client
from trainer.tracking.tracker import RunTracker, read_run_info
from trainer.tracking.uri import TrackingUri

__all__ = [
    "GoogleIdTokenHeaderProvider",
    "RunTracker",
    "TrackingUri",
    "is_transient",
    "open_client",
    "read_run_info",
    "replay",
    "update_run_info",
]
