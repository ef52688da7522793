"""Each component's body runs apart from its module: the program the image runs must load.

KFP ships a lightweight component as the function's source alone (ephemeral_component.py),
so a default or annotation that names something of the component's module (a contract
constant, say) compiles fine and fails only when the step starts. This loads every
executor's program of both compiled pipelines in a fresh interpreter, as the image does.
"""

import os
import subprocess
import sys

import pytest
import yaml

from pipelines import PIPELINES, SPEC_DIR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _programs():
    for name in PIPELINES:
        with open(os.path.join(REPO, SPEC_DIR, f"{name}.yaml")) as f:
            spec = yaml.safe_load(f)
        for executor, body in spec["deploymentSpec"]["executors"].items():
            command = body.get("container", {}).get("command", [])
            programs = [c for c in command if "def " in c and "import kfp" in c]
            if programs:
                yield f"{name}/{executor}", programs[0]


@pytest.mark.parametrize("name, program", list(_programs()), ids=lambda v: v if "/" in v else "")
def test_every_component_program_loads_on_its_own(name, program, tmp_path):
    path = tmp_path / "ephemeral_component.py"
    path.write_text(program, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, f"{name}: {out.stderr[-2000:]}"


def test_every_component_is_checked():
    names = {n.split("/")[1] for n, _ in _programs()}
    assert {
        "exec-ingest-data",
        "exec-plan-sweep",
        "exec-transform-data",
        "exec-bind-transforms",
        "exec-train-model",
        "exec-evaluate-model",
        "exec-render-report",
        "exec-select-best-model",
    } <= names
