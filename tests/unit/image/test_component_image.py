"""The component image's build files: one default reference, versions in step, non-root, CUDA."""

import os
import re
import shutil
import subprocess

import yaml

import components

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _read(name: str) -> str:
    with open(os.path.join(REPO, name)) as f:
        return f.read()


def _pins() -> dict:
    pins = {}
    for line in _read("constraints.txt").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _setup_version() -> str:
    return re.search(r'^\s*version="([^"]+)"', _read("setup.py"), re.M).group(1)


def test_dockerfile_installs_the_pinned_package_with_cuda_and_runs_as_non_root():
    dockerfile = _read("Dockerfile")
    assert re.search(r"pip install -c constraints\.txt '\.\[all,gpu\]'", dockerfile)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    # Dataflow workers start through Beam's boot program, from the same Beam as the package.
    beam = re.search(r"^ARG BEAM_VERSION=(\S+)", dockerfile, re.M).group(1)
    assert beam == _pins()["apache-beam"]
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    python = re.search(r"^ARG PYTHON_VERSION=(\S+)", dockerfile, re.M).group(1)
    assert f'python_requires=">={python},' in _read("setup.py")
    assert "MLFLOW_GOOGLE_AUTH_AUDIENCES=https://*.run.app" in dockerfile


def test_gpu_extra_is_tensorflow_and_cuda_at_the_pinned_tensorflow():
    setup = _read("setup.py")
    gpu = re.search(r"^GPU = \[(.*)\]", setup, re.M).group(1)
    assert gpu == f'"tensorflow[and-cuda]=={_pins()["tensorflow"]}"'
    cuda = [n for n in _pins() if n.startswith("nvidia-")]
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= set(cuda)


def test_image_tags_name_the_package_version_and_the_commit():
    version = _setup_version()
    assert components.COMPONENT_IMAGE.endswith(f":{version}")
    build = yaml.safe_load(_read("cloudbuild.yaml"))
    assert build["substitutions"]["_VERSION"] == version
    assert build["images"] == ["${_IMAGE}:${_VERSION}", "${_IMAGE}:${_VERSION}-${_GIT_SHA}"]
    (build_step,) = [s for s in build["steps"] if s["id"] == "build"]
    assert "--tag=${_IMAGE}:${_VERSION}-${_GIT_SHA}" in build_step["args"]
    # The one default reference lives in components/__init__.py; nothing else spells it.
    for name in ("Dockerfile", "Makefile", "cloudbuild.yaml", "setup.py"):
        assert components.COMPONENT_IMAGE not in _read(name), name


def test_make_image_without_docker_fails_and_says_what_to_do(tmp_path):
    make = shutil.which("make")
    if make is None:
        import pytest

        pytest.skip("make is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "sed", "git"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    out = subprocess.run(
        [make, "--no-print-directory", "image"],
        cwd=REPO,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "make image: docker is not installed here" in out.stderr
    assert "make cloudbuild IMAGE_REPO=" in out.stderr


def test_make_image_tags_version_and_git_sha():
    out = subprocess.run(
        ["make", "-n", "image", "IMAGE_REPO=europe-west4-docker.pkg.dev/p/pipelines/b2b-recs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    repo = "europe-west4-docker.pkg.dev/p/pipelines/b2b-recs"
    assert f"--tag {repo}:{_setup_version()} --tag {repo}:{_setup_version()}-{sha}" in out
