"""What a step runs on: the custom job's machine (from its environment) or the vCPUs it sees."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping

from trainer import contract

CGROUP_ROOT = "/sys/fs/cgroup"
# n1-standard-8, e2-highmem-4, g2-standard-12: the vCPUs are the last number.
_VCPUS_IN_NAME = re.compile(r"^[a-z0-9]+-[a-z]+-(?P<vcpus>[0-9]+)$")


@dataclasses.dataclass(frozen=True)
class Machine:
    """A step's machine: type, vCPUs, accelerators and how it was scheduled."""

    machine_type: str
    vcpus: float
    accelerator_type: str = ""
    accelerator_count: int = 0
    scheduling: str = "STANDARD"


def cgroup_vcpus(root: str = CGROUP_ROOT) -> float | None:
    """The CPU limit of this container (cgroup v2 ``cpu.max``, else v1's CFS quota), or None.

    A Kubernetes pod (a Vertex AI Pipelines step, kfp on a cluster) sees the node's CPUs in
    ``os.cpu_count`` but may use only its limit; None where no limit is set.
    """
    try:
        with open(os.path.join(root, "cpu.max"), encoding="ascii") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as f:
                quota = f.read().strip()
            with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), encoding="ascii") as f:
                period = f.read().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def detect_machine(
    environ: Mapping[str, str] | None = None, cgroup_root: str = CGROUP_ROOT
) -> Machine:
    """The machine this process runs on.

    A training custom job names its machine in ``contract.ENV_MACHINE_TYPE`` (and the
    accelerator, scheduling) as pipelines/tasks.py sets them; its vCPUs are the number in the
    type's name. Elsewhere the type is ``contract.MACHINE_VERTEX_STEP`` on Vertex AI Pipelines
    (its run labels are in the environment) or ``contract.MACHINE_LOCAL``, and the vCPUs are
    the container's CPU limit, else ``os.cpu_count()``.
    """
    env = os.environ if environ is None else environ
    machine_type = env.get(contract.ENV_MACHINE_TYPE, "")
    named = _VCPUS_IN_NAME.match(machine_type)
    vcpus = float(named["vcpus"]) if named else None
    if vcpus is None:
        limit = cgroup_vcpus(cgroup_root)
        vcpus = min(limit, os.cpu_count() or limit) if limit else float(os.cpu_count() or 1)
    if not machine_type:
        vertex = contract.ENV_VERTEX_RUN_LABELS in env
        machine_type = contract.MACHINE_VERTEX_STEP if vertex else contract.MACHINE_LOCAL
    accelerator = env.get(contract.ENV_ACCELERATOR_TYPE, "")
    try:
        count = int(env.get(contract.ENV_ACCELERATOR_COUNT, "") or (1 if accelerator else 0))
    except ValueError:
        count = 1 if accelerator else 0
    return Machine(
        machine_type=machine_type,
        vcpus=math.ceil(vcpus * 1000) / 1000,
        accelerator_type=accelerator,
        accelerator_count=count if accelerator else 0,
        scheduling=env.get(contract.ENV_SCHEDULING, "") or "STANDARD",
    )
