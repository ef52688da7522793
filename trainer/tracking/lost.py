"""Ending lost runs: RUNNING runs whose process died without ending them.

A run whose process was killed (out of memory, a preempted machine) stays RUNNING in MLflow
for ever. :func:`end_lost_runs` finds the RUNNING runs silent for longer than a limit
(``liveness.lost_since``), and ends each FAILED, once, tagged ``contract.TAG_LOST`` with the
time it was last heard from and a ``failure_reason`` saying so. A step that takes the run
over later (``send.RunSender``, by its run key) clears ``lost`` and sets it RUNNING again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterator, Sequence

from trainer import contract
from trainer.tracking.liveness import lost_reason, lost_since, stamp
from trainer.tracking.send import is_transient

log = logging.getLogger(__name__)

SEARCH_PAGE_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class LostRun:
    """A run ended FAILED as lost.

    Attributes:
        run_id: MLflow run id.
        run_name: Its name.
        last_heard: When it was last heard from (``liveness.stamp`` form); its ``lost`` tag.
        silent_s: Seconds from then to the judging time.
        end_time: The end time given to the run (ms since the epoch).
    """

    run_id: str
    run_name: str
    last_heard: str
    silent_s: float
    end_time: int

    @property
    def reason(self) -> str:
        """The run's ``failure_reason`` tag."""
        return lost_reason(self.last_heard, self.silent_s)


def _running_runs(client, experiment_ids: Sequence[str]) -> Iterator:
    """The RUNNING runs of the experiments, page by page."""
    from mlflow.entities import ViewType

    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=f"attributes.status = '{contract.STATUS_RUNNING}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=SEARCH_PAGE_SIZE,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _end(client, run_id: str, lost_after_s: float, now: dt.datetime) -> LostRun | None:
    """Ends the run FAILED as lost if it still is lost when read again; else None."""
    from mlflow.entities import RunTag

    # Read again: another caller may have ended it, or a retried step taken it over, since.
    run = client.get_run(run_id)
    info = run.info
    heard = lost_since(info.status, run.data.tags, info.start_time, lost_after_s, now)
    if heard is None or info.lifecycle_stage != "active":
        return None
    silent_s = (now - heard).total_seconds()
    lost = LostRun(run_id, info.run_name or "", stamp(heard), silent_s, int(time.time() * 1000))
    tags = {contract.TAG_LOST: lost.last_heard, contract.TAG_FAILURE_REASON: lost.reason}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run_id, contract.STATUS_FAILED, end_time=lost.end_time)
    log.warning("MLflow run %s (%s) ended FAILED: %s", run_id, lost.run_name, lost.reason)
    return lost


def end_lost_runs(
    client,
    experiment_ids: Sequence[str],
    lost_after_s: float = contract.LOST_AFTER_S,
    now: dt.datetime | None = None,
) -> list[LostRun]:
    """Ends FAILED, once, every RUNNING run of the experiments silent for over ``lost_after_s``.

    Safe to call from several processes at once: a run ended (or taken over) by another in
    between is left alone. An MLflow outage never fails the caller: it is logged, and what was
    ended until then is returned.

    Args:
        client: An ``MlflowClient`` (``open_client``).
        experiment_ids: The experiments whose runs are judged.
        lost_after_s: Seconds without a sign of life after which a RUNNING run is lost.
        now: The judging time (default: now).

    Returns:
        The runs this call ended.
    """
    from mlflow.exceptions import MlflowException

    now = now or dt.datetime.now(dt.UTC)
    ended: list[LostRun] = []
    if not experiment_ids:
        return ended
    try:
        for run in _running_runs(client, experiment_ids):
            info = run.info
            if lost_since(info.status, run.data.tags, info.start_time, lost_after_s, now) is None:
                continue
            try:
                lost = _end(client, info.run_id, lost_after_s, now)
            except MlflowException as err:
                if is_transient(err):
                    raise
                # Deleted, or otherwise refused, in between: nothing to end any more.
                log.warning("MLflow run %s not ended as lost: %s", info.run_id, err)
                continue
            if lost is not None:
                ended.append(lost)
    except Exception as err:  # is_transient tells an outage (logged) from a fault (raised)
        if not is_transient(err):
            raise
        log.error(
            "Lost runs not ended: MLflow did not answer (%s: %s); %d ended before",
            *(type(err).__name__, err, len(ended)),
        )
    return ended
