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


def _stages(dockerfile: str) -> dict[str, list[str]]:
    """Each build stage's name -> its instructions (lines), with the stage it starts from."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in dockerfile.splitlines():
        match = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line)
        if match:
            current = match.group(2) or match.group(1)
            stages[current] = [f"FROM {match.group(1)}"]
        elif current and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def _effective(stages: dict[str, list[str]], name: str, instruction: str) -> str | None:
    """The last value of an instruction (USER, ENTRYPOINT) in a stage or the stages below it."""
    lines = stages[name]
    own = [line.split(None, 1)[1] for line in lines if line.startswith(instruction + " ")]
    if own:
        return own[-1]
    parent = lines[0].split()[1]
    return _effective(stages, parent, instruction) if parent in stages else None


def test_component_image_is_the_default_target_with_cuda_and_runs_as_non_root():
    dockerfile = _read("Dockerfile")
    stages = _stages(dockerfile)
    assert list(stages)[-1] == "component", "docker build without --target builds the component"
    assert any("pip install -c constraints.txt '.[all,gpu]'" in x for x in stages["component"])
    assert _effective(stages, "component", "USER") not in (None, "root", "0")


def test_dataflow_worker_image_starts_beams_boot_as_root_without_cuda():
    # Dataflow runs the image's entrypoint, which must be Beam's boot program; the boot program
    # writes under root-owned /opt/apache/beam and Dataflow mounts root-owned /var/opt/google.
    dockerfile = _read("Dockerfile")
    stages = _stages(dockerfile)
    worker = stages["dataflow-worker"]
    assert _effective(stages, "dataflow-worker", "ENTRYPOINT") == '["/opt/apache/beam/boot"]'
    assert _effective(stages, "dataflow-worker", "USER") in (None, "root", "0")
    installs = [x for x in worker if "pip install" in x]
    assert installs == ["RUN pip install -c constraints.txt '.[trainer]'"], installs
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in worker
    # The boot program comes from the Beam SDK image of the package's own Beam version.
    beam = re.search(r"^ARG BEAM_VERSION=(\S+)", dockerfile, re.M).group(1)
    assert beam == _pins()["apache-beam"]
    assert "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in stages["beam"][0]
    # TensorFlow's CUDA wheels come only with the gpu extra, which the worker does not install.
    trainer_extra = re.search(r"^TRAINER = \[(.*?)\]", _read("setup.py"), re.M | re.S).group(1)
    assert "tensorflow==" in trainer_extra and "and-cuda" not in trainer_extra
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
    worker = "${_IMAGE}-dataflow-worker"
    assert build["images"] == [
        "${_IMAGE}:${_VERSION}",
        "${_IMAGE}:${_VERSION}-${_GIT_SHA}",
        f"{worker}:${{_VERSION}}",
        f"{worker}:${{_VERSION}}-${{_GIT_SHA}}",
    ]
    (build_step,) = [s for s in build["steps"] if s["id"] == "build"]
    assert "--tag=${_IMAGE}:${_VERSION}-${_GIT_SHA}" in build_step["args"]
    assert not any(a.startswith("--target") for a in build_step["args"])
    (worker_step,) = [s for s in build["steps"] if s["id"] == "build-dataflow-worker"]
    assert "--target=dataflow-worker" in worker_step["args"]
    assert f"--tag={worker}:${{_VERSION}}-${{_GIT_SHA}}" in worker_step["args"]
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
