"""The journal: every operation a tracker accepted, on disk before it is queued.

A process can die without a chance to finish its run (the kernel's OOM killer, a preempted
machine: SIGKILL, no handler runs). So ``RunTracker`` appends each operation to the journal
(``contract.JOURNAL_FILE``, the backlog's format: a ``session`` header, then operations)
before queuing it, hands each line to the kernel at once (which a killed process cannot
lose) and syncs it to disk with every metric batch and before every artifact (which a lost
machine cannot either). ``<journal>.progress`` records how many lines MLflow holds; replaying
the journal (``trainer.tracking.backlog.replay``) sends what is beyond, carefully, so once.

On Vertex the folder is the step's output on Cloud Storage through Cloud Storage FUSE, which
uploads a file on flush and sync (https://cloud.google.com/storage/docs/cloud-storage-fuse/overview):
the journal reaches the bucket as often as it is synced, so a few times an epoch.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from trainer import contract
from trainer.tracking.backlog import read_progress, save_progress

log = logging.getLogger(__name__)

__all__ = ["Journal"]


class Journal:
    """One tracker session's part of a folder's journal.

    Args:
        folder: Where the journal is (created if missing).
        header: The session header's fields (experiment, tracking URI).
    """

    def __init__(self, folder: str, header: dict):
        self.path = os.path.join(folder, contract.JOURNAL_FILE)
        os.makedirs(folder, exist_ok=True)
        self.lines = 0
        ends_cleanly = True
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                data = f.read()
            self.lines = data.count(b"\n")
            ends_cleanly = not data or data.endswith(b"\n")
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open until close
        if not ends_cleanly:  # a line cut by a kill: end it, so it stays one (unreadable) line
            self._file.write("\n")
            self.lines += 1
        # The progress record is this session's to move only once all earlier lines are sent;
        # else a later replay sends this session again (carefully: nothing twice).
        self._owns_progress = read_progress(self.path) >= self.lines
        self._sent = self._saved = -1
        self.write(
            {
                "op": "session",
                "run_id": None,
                **header,
                "late_points": 0,
                "reason": None,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
            sync=True,
        )

    def write(self, op: dict, sync: bool) -> int:
        """Appends one operation; returns its line number (-1: the journal cannot be written)."""
        if self._file is None:
            return -1
        try:
            self._file.write(json.dumps({k: v for k, v in op.items() if k[0] != "_"}) + "\n")
            self._file.flush()  # in the kernel's hands: survives a SIGKILL of this process
            if sync:
                os.fsync(self._file.fileno())  # on disk: survives the machine going away
        except (OSError, ValueError) as err:  # a full disk must not kill training either
            log.error(
                "tracking journal %s cannot be written (%s); going on without", self.path, err
            )
            self._file = None
            return -1
        self.lines += 1
        return self.lines - 1

    def sent(self, line: int) -> None:
        """Notes that MLflow holds line ``line`` (and, the queue being in order, all before)."""
        self._sent = max(self._sent, line)

    def save_progress(self, run_id: str | None) -> None:
        """Records how much of the journal MLflow holds, when that moved."""
        if not self._owns_progress or self._sent <= self._saved:
            return
        try:
            save_progress(self.path, self._sent + 1, run_id)
            self._saved = self._sent
        except OSError as err:  # only costs a longer (careful, so still exact) replay
            log.warning("tracking journal progress not saved: %s", err)

    def close(self, run_id: str | None) -> None:
        """Marks every line handled (sent, or kept in the backlog) and closes the file."""
        self._sent = self.lines - 1
        self.save_progress(run_id)
        if self._file is not None:
            try:
                self._file.close()
            except OSError as err:
                log.warning("tracking journal not closed cleanly: %s", err)
            self._file = None
