"""The pipeline run's labels on what a step starts itself: a Dataflow job's ``--labels``.

Vertex AI Pipelines puts its run's labels on the custom jobs it starts, but not on resources a
user-defined component creates, such as the transform's Dataflow job: such a component is to
read them from ``VERTEX_AI_PIPELINES_RUN_LABELS`` (JSON) and attach them itself
(https://cloud.google.com/vertex-ai/docs/pipelines/gcpc-label-propagation, "Resources without
automatic labeling" and "Resources generated from user-defined components"), as GCPC's own
Dataflow launcher does with ``--labels key=value`` (google_cloud_pipeline_components/container/
v1/dataflow/dataflow_python_job_remote_runner.py, get_system_label_args_list). The billing id
``vertex-ai-pipelines-run-billing-id`` is among them, so the Cloud Billing export can sum a
pipeline run's Dataflow cost with its custom jobs'.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence

from trainer import contract

log = logging.getLogger(__name__)
_LABELS = "--labels"


def run_labels(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The pipeline run's labels from the environment ({} outside Vertex or when malformed)."""
    env = os.environ if environ is None else environ
    text = env.get(contract.ENV_VERTEX_RUN_LABELS, "")
    if not text:
        return {}
    try:
        labels = json.loads(text)
    except json.JSONDecodeError:
        log.warning(
            "%s is not JSON (%r): no run labels added", contract.ENV_VERTEX_RUN_LABELS, text
        )
        return {}
    if not isinstance(labels, dict):
        log.warning("%s is not a JSON object: no run labels added", contract.ENV_VERTEX_RUN_LABELS)
        return {}
    return {str(k): str(v) for k, v in labels.items()}


def _given_keys(args: Sequence[str]) -> set[str]:
    keys, follows = set(), False
    for arg in args:
        value = arg[len(_LABELS) + 1 :] if arg.startswith(_LABELS + "=") else None
        if follows:
            value, follows = arg, False
        elif arg == _LABELS:
            follows = True
            continue
        if value is not None:
            keys.add(value.partition("=")[0])
    return keys


def with_run_labels(args: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """``args`` with ``--labels=key=value`` for each run label that ``args`` does not set.

    A label the Beam options already set (the environment file's, written there when the job
    was submitted) keeps its value, as GCPC's ``attach_system_labels`` keeps the user's.
    """
    given = _given_keys(args)
    extra = [f"{_LABELS}={k}={v}" for k, v in sorted(run_labels(environ).items()) if k not in given]
    return [*args, *extra]
