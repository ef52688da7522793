"""The component image's CUDA libraries resolve to the pins (a pip resolver dry run, no install).

Needs the package index (PyPI); reads only metadata, installs nothing. About 40 s.
"""

import json
import os
import platform
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
# What TensorFlow 2.21 loads on a GPU (tensorflow/tools/pip_package: the and-cuda extra).
CUDA_LIBRARIES = {
    "nvidia-cublas-cu12",
    "nvidia-cuda-cupti-cu12",
    "nvidia-cuda-nvrtc-cu12",
    "nvidia-cuda-runtime-cu12",
    "nvidia-cudnn-cu12",
    "nvidia-cufft-cu12",
    "nvidia-curand-cu12",
    "nvidia-cusolver-cu12",
    "nvidia-cusparse-cu12",
    "nvidia-nccl-cu12",
    "nvidia-nvjitlink-cu12",
}


def _gpu_requirement() -> str:
    with open(os.path.join(REPO, "setup.py")) as f:
        return re.search(r'^GPU = \["([^"]+)"\]', f.read(), re.M).group(1)


def _pins() -> dict:
    with open(os.path.join(REPO, "constraints.txt")) as f:
        lines = [line.strip() for line in f if "==" in line and not line.startswith("#")]
    return {name.lower(): version for name, version in (line.split("==") for line in lines)}


@pytest.mark.timeout(120)
def test_gpu_extra_resolves_to_the_pinned_cuda_libraries():
    # Resolved for this interpreter and platform: the image's (python:3.11-slim, x86_64).
    if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
        pytest.skip("resolves for the image's platform: Python 3.11 on x86_64 Linux")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            "-",
            "-c",
            "constraints.txt",
            _gpu_requirement(),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=115,
    )
    if out.returncode != 0 and re.search(r"(?i)network|connection|resolve host", out.stderr):
        pytest.fail(f"the package index is unreachable:\n{out.stderr[-2000:]}")
    assert out.returncode == 0, out.stderr[-3000:]
    resolved = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(out.stdout)["install"]
    }
    pins = _pins()
    assert resolved["tensorflow"] == pins["tensorflow"]
    assert CUDA_LIBRARIES <= set(resolved), sorted(CUDA_LIBRARIES - set(resolved))
    # Every CUDA wheel the image gets is pinned, at the pinned version.
    cuda = {name: v for name, v in resolved.items() if name.startswith("nvidia-")}
    assert {name: pins.get(name) for name in cuda} == cuda
