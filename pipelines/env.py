"""Environments as files: configs/env/<name>.yaml, its schema, validation and pipeline parameters.

An environment file says where and how a pipeline runs on Vertex AI (project, region,
pipeline root, service account, network, labels, MLflow server, component image, per-step
resources, the training machine, Beam options). Pipelines stay environment-free: the values
that vary at run time reach them as pipeline parameters (``pipeline_parameters``); the
training machine is compiled into the spec (``compile_options``: GCPC writes a custom job's
machine into its worker pool spec at compile time); the rest is used by ``pipelines.vertex``
when it builds the job. A bad file raises ``EnvError`` naming
the file, the field and what was expected, e.g.
``configs/env/dev.yaml: resources.train.memory_limit: expected a quantity in K, M or G like
16G or 512M (Ki, Mi, Gi, T are converted), got '16 GB'``.

Standard library only at module top (``pipelines/`` compiles with kfp alone); PyYAML is
imported where a file is read.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import os
import re
from typing import Any

from components import IMAGE_REF
from trainer.contract import GCP_PROJECT_ID, STEPS  # STEPS: each takes CPU / memory limits

ENV_DIR = os.path.join("configs", "env")

# Quantities as KFP's set_cpu_limit / set_memory_limit accept them (Kubernetes-style). The
# limits reach Vertex AI as runtime pipeline parameters, so Vertex reads the strings as they
# are (kfp's compile-time conversion, compiler_utils._memory_to_float, never sees them), and
# Vertex documents fewer forms: a CPU limit is a whole number of CPUs or a number followed by
# "m"; a memory limit is a number followed by K, M or G
# (https://cloud.google.com/vertex-ai/docs/pipelines/machine-types). ``cpu_quantity`` and
# ``memory_quantity`` write what a file says in those forms.
_CPU = re.compile(r"^(?P<number>([0-9]*\.)?[0-9]+)(?P<unit>m?)$")
_MEMORY = re.compile(r"^(?P<number>([0-9]*\.)?[0-9]+)(?P<unit>[EPTGMK]i?)?$")
_BYTES = {
    **{u: 1000 ** (i + 1) for i, u in enumerate("KMGTPE")},
    **{f"{u}i": 1024 ** (i + 1) for i, u in enumerate("KMGTPE")},
}
VERTEX_MEMORY_UNITS = ("G", "M", "K")
_MEMORY_EXPECTED = "a quantity in K, M or G like 16G or 512M (Ki, Mi, Gi, T are converted)"
_DURATION = re.compile(r"^[0-9]+s$")
_PROJECT = re.compile(rf"^{GCP_PROJECT_ID}$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_NETWORK = re.compile(r"^projects/[0-9]+/global/networks/[a-z]([-a-z0-9]*[a-z0-9])?$")
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9][-a-z0-9]{4,62}@[-a-z0-9.]+\.gserviceaccount\.com$")
# GCP label keys start with a lowercase letter; keys and values: lowercase, digits, - and _.
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_ACCELERATOR = re.compile(r"^(NVIDIA_[A-Z0-9_]+|TPU_[A-Z0-9_]+)$")

_TOP_KEYS = (
    "project",
    "region",
    "pipeline_root",
    "service_account",
    "network",
    "labels",
    "image",
    "dataflow_worker_image",
    "mlflow",
    "resources",
    "train",
    "beam_args",
    "model_upload",
    "prices",
)


class EnvError(ValueError):
    """An environment file is invalid; the message names the file and the field."""

    def __init__(self, source: str, field: str, problem: str):
        super().__init__(f"{source}: {field}: {problem}")
        self.source, self.field, self.problem = source, field, problem


@dataclasses.dataclass(frozen=True)
class StepResources:
    """CPU and memory limits of one step; empty means Vertex's default machine."""

    cpu_limit: str = ""
    memory_limit: str = ""


SCHEDULING_STRATEGIES = ("STANDARD", "SPOT", "FLEX_START")


@dataclasses.dataclass(frozen=True)
class TrainMachine:
    """The Vertex custom job that trains; an empty machine_type trains in-pipeline."""

    machine_type: str = ""
    accelerator_type: str = ""
    accelerator_count: int = 0
    timeout: str = "86400s"
    # The custom job's scheduling.strategy: STANDARD (on demand), SPOT (preemptible, cheaper),
    # FLEX_START (waits for capacity). https://cloud.google.com/vertex-ai/docs/reference/rest/
    # v1/CustomJobSpec#Strategy
    scheduling_strategy: str = "STANDARD"
    # The environment's labels, set on the custom job (pipelines/tasks.py); (key, value) pairs.
    labels: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelUpload:
    """Where a promoted champion goes on Vertex: a version of one Vertex Model Registry model.

    ``parent_model`` empty: the first promotion creates the model (its resource name is then
    the value to set here, so later promotions add versions to it). ``endpoint``: also deploy
    each new champion there on ``machine_type``, taking all its traffic.
    """

    display_name: str
    region: str
    image: str  # the serving container: the component image runs the predictor
    parent_model: str = ""
    endpoint: str = ""
    machine_type: str = "n1-standard-2"


@dataclasses.dataclass(frozen=True)
class MlflowEnv:
    """Where the MLflow tracking server and its UI are."""

    tracking_uri: str
    ui_url: str = ""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """One validated environment file."""

    name: str
    source: str
    project: str
    region: str
    pipeline_root: str
    mlflow: MlflowEnv
    service_account: str = ""
    network: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    image: str = ""
    dataflow_worker_image: str = ""
    resources: dict[str, StepResources] = dataclasses.field(default_factory=dict)
    train: TrainMachine = TrainMachine()
    beam_args: tuple[str, ...] = ()
    model_upload: ModelUpload | None = None
    # Overrides of the packaged price table (trainer/cost/prices.yaml), checked.
    prices: dict[str, Any] = dataclasses.field(default_factory=dict)

    def pipeline_parameters(self) -> dict[str, Any]:
        """The pipeline parameters this environment sets (the same names in every pipeline).

        Resource values the file leaves empty are left out, so the pipeline's own defaults
        apply. ``beam_pipeline_args`` gets ``--sdk_container_image=<dataflow worker image>`` when
        the runner is Dataflow and the Beam args name no worker image, so Dataflow's workers
        run the same code as the component, in the Dockerfile's ``dataflow-worker`` target;
        and ``--labels=<key>=<value>`` for each of the file's labels the args do not set, so
        the Dataflow job carries them as the pipeline job does (the transform adds the run's
        billing id at run time: trainer/cost/labels.py). ``prices`` is set when the file
        overrides the price table.
        """
        optional: dict[str, Any] = {}
        for step in STEPS:
            resources = self.resources.get(step, StepResources())
            optional[f"{step}_cpu_limit"] = resources.cpu_limit
            optional[f"{step}_memory_limit"] = resources.memory_limit
        optional["prices"] = self.prices
        beam_args = _beam_args_with_labels(list(self.beam_args), self.labels)
        return {
            "mlflow_tracking_uri": self.mlflow.tracking_uri,
            "mlflow_ui_url": self.mlflow.ui_url,
            "beam_pipeline_args": _beam_args_with_image(
                beam_args, self.dataflow_worker_image, self.source
            ),
            **{k: v for k, v in optional.items() if v},
        }

    def compile_options(self) -> dict[str, Any]:
        """What this environment decides when a pipeline is compiled (``make_*_pipeline``).

        ``train_machine`` is None when the file names no machine type: training then runs as
        an ordinary pipeline step, as in the packaged specs. ``model_upload`` is None without a
        ``model_upload`` section: a promotion then moves the MLflow alias only.
        """
        return {
            "train_machine": self.train if self.train.machine_type else None,
            "model_upload": self.model_upload,
        }


def parameter_names() -> tuple[str, ...]:
    """Every pipeline parameter an environment file can set; each pipeline accepts them all."""
    resources = tuple(f"{s}_{r}" for s in STEPS for r in ("cpu_limit", "memory_limit"))
    return ("mlflow_tracking_uri", "mlflow_ui_url", "beam_pipeline_args", "prices", *resources)


def dataflow_worker_image(image: str) -> str:
    """The Dataflow worker image built with ``image`` (the Dockerfile's ``dataflow-worker``).

    ``make image`` and cloudbuild.yaml push it as the component image's repository with
    ``-dataflow-worker`` appended, with the same tags; a digest names one image only, so
    nothing can be derived from it ("").
    """
    if "@" in image:
        return ""
    repo, _, tag = image.rpartition(":")
    return f"{repo}-dataflow-worker:{tag}"


def _beam_args_with_image(args: list[str], worker_image: str, source: str = "") -> list[str]:
    dataflow = any(a in ("--runner=DataflowRunner", "--runner=dataflow") for a in args)
    named = any(
        a.startswith(("--sdk_container_image=", "--worker_harness_container_image=")) for a in args
    )
    if dataflow and not named:
        if not worker_image:
            raise EnvError(
                source,
                "dataflow_worker_image",
                "the image is a digest, from which no worker image follows: name the "
                "dataflow-worker image's digest too",
            )
        args.append(f"--sdk_container_image={worker_image}")
    return args


def _beam_args_with_labels(args: list[str], labels: dict[str, str]) -> list[str]:
    """Dataflow's ``--labels=key=value`` for each label the args do not set (Dataflow only)."""
    if not any(a in ("--runner=DataflowRunner", "--runner=dataflow") for a in args):
        return args
    given = {a.split("=", 2)[1] for a in args if a.startswith("--labels=") and a.count("=") >= 2}
    return args + [f"--labels={k}={v}" for k, v in labels.items() if k not in given]


def _prices(r: _Reader) -> dict[str, Any]:
    from trainer import cost

    try:
        return cost.check_overrides(r.data.get("prices"))
    except cost.PriceError as err:
        field = "prices" if err.field == "(prices)" else f"prices.{err.field}"
        raise EnvError(r.source, field, err.problem) from err


class _Reader:
    """Reads typed fields out of one mapping, naming the file and the dotted field on error."""

    def __init__(self, source: str, data: Any, where: str = ""):
        self.source, self.where = source, where
        if not isinstance(data, dict):
            self.fail("", f"expected a mapping, got {type(data).__name__}")
        self.data = data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> None:
        raise EnvError(self.source, self.path(key) if key else (self.where or "(file)"), problem)

    def only(self, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            self.fail(unknown[0], f"unknown field (allowed: {', '.join(allowed)})")

    def string(
        self, key: str, pattern: re.Pattern | None = None, expected: str = "", *, required=False
    ) -> str:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                self.fail(key, f"is required ({expected or 'a string'})")
            return ""
        if not isinstance(value, str):
            self.fail(key, f"expected {expected or 'a string'}, got {value!r}")
        if pattern is not None and not pattern.match(value):
            self.fail(key, f"expected {expected}, got {value!r}")
        return value

    def child(self, key: str) -> _Reader:
        return _Reader(self.source, self.data.get(key) or {}, self.path(key))


def _tracking_uri(r: _Reader) -> str:
    from trainer.tracking import TrackingUri

    uri = r.string("tracking_uri", expected="the MLflow server's https:// URL", required=True)
    try:
        parsed = TrackingUri(uri.rstrip("/"))
    except ValueError as err:
        if "://" in uri:
            r.fail("tracking_uri", str(err))
        parsed = None  # a path
    if parsed is None or parsed.scheme in ("sqlite", "file"):
        r.fail(
            "tracking_uri",
            f"expected the MLflow server's https:// URL, got {uri!r}: a local store "
            "(sqlite:, file:, a path) lives on the submitter's disk, which no Vertex worker can "
            "read; deploy mlflow_server/ and use its URL",
        )
    if not parsed.is_server:
        r.fail("tracking_uri", f"expected an http(s):// URL, got {uri!r}")
    return parsed.uri


def _mlflow(r: _Reader) -> MlflowEnv:
    r.only(("tracking_uri", "ui_url"))
    ui_url = r.string("ui_url", re.compile(r"^https?://"), "an http(s):// URL")
    return MlflowEnv(tracking_uri=_tracking_uri(r), ui_url=ui_url.rstrip("/"))


def _resources(r: _Reader) -> dict[str, StepResources]:
    r.only(STEPS)
    out = {}
    for step in STEPS:
        s = r.child(step)
        s.only(("cpu_limit", "memory_limit"))
        # YAML reads `cpu_limit: 4` as an int; a count of CPUs is what it means.
        cpu = s.data.get("cpu_limit")
        if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
            s.data = {**s.data, "cpu_limit": str(cpu)}
        cpu = s.string("cpu_limit", _CPU, "a CPU count like 4, 0.5 or 500m")
        memory = s.string("memory_limit", _MEMORY, _MEMORY_EXPECTED)
        if memory and not _MEMORY.match(memory)["unit"]:
            s.fail(
                "memory_limit",
                f"expected a unit, {', '.join(VERTEX_MEMORY_UNITS)} (Vertex AI's units, like 16G "
                f"or 512M), got {memory!r}",
            )
        for key, value, pattern in (("cpu_limit", cpu, _CPU), ("memory_limit", memory, _MEMORY)):
            if value and not float(pattern.match(value)["number"]):
                s.fail(key, f"expected more than 0, got {value!r}")
        out[step] = StepResources(
            cpu_limit=cpu_quantity(cpu) if cpu else "",
            memory_limit=memory_quantity(memory) if memory else "",
        )
    return out


def cpu_quantity(value: str) -> str:
    """A CPU limit as Vertex AI reads it: whole CPUs (``4``) or millicores (``500m``).

    A fraction of a CPU is written in millicores, rounded up (``0.5`` -> ``500m``,
    ``1.0`` -> ``1``); ``500m`` and ``4`` are returned as they are.

    Raises:
        ValueError: Not a CPU count (``_CPU``).
    """
    match = _CPU.match(value)
    if match is None:
        raise ValueError(f"not a CPU count: {value!r}")
    if match["unit"]:
        return value
    number = fractions.Fraction(match["number"])
    if number.denominator == 1:
        return str(number.numerator)
    return f"{math.ceil(number * 1000)}m"


def memory_quantity(value: str) -> str:
    """A memory limit in the units Vertex AI documents: K, M or G (``16G``, ``512M``).

    A whole number of K, M or G is returned as it is. Anything else (a fraction, or a unit
    Vertex does not list: Ki, Mi, Gi, T, ...) is converted exactly to the largest of G, M, K
    that gives a whole number (``0.5G`` -> ``500M``, ``1T`` -> ``1000G``), else rounded up to
    whole M (whole K below 1M), so a limit never shrinks: ``16Gi`` -> ``17180M``,
    ``512Mi`` -> ``537M``, ``256Ki`` -> ``263K``.

    Raises:
        ValueError: Not a memory quantity with a unit.
    """
    match = _MEMORY.match(value)
    if match is None or not match["unit"]:
        raise ValueError(f"not a memory quantity with a unit: {value!r}")
    if match["unit"] in VERTEX_MEMORY_UNITS and "." not in match["number"]:
        return value
    size = fractions.Fraction(match["number"]) * _BYTES[match["unit"]]
    for unit in VERTEX_MEMORY_UNITS:
        if size % _BYTES[unit] == 0:
            return f"{size // _BYTES[unit]}{unit}"
    unit = "M" if size >= _BYTES["M"] else "K"
    return f"{math.ceil(size / _BYTES[unit])}{unit}"


def _train(r: _Reader) -> TrainMachine:
    r.only(
        ("machine_type", "accelerator_type", "accelerator_count", "timeout", "scheduling_strategy")
    )
    machine = r.string(
        "machine_type", re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$"), "a machine type like n1-standard-8"
    )
    accelerator = r.string(
        "accelerator_type", _ACCELERATOR, "a Vertex accelerator like NVIDIA_TESLA_T4 or NVIDIA_L4"
    )
    count = r.data.get("accelerator_count", 1 if accelerator else 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        r.fail("accelerator_count", f"expected a whole number >= 0, got {count!r}")
    if accelerator and not machine:
        r.fail("machine_type", f"is required when accelerator_type is set ({accelerator})")
    if accelerator and count == 0:
        r.fail("accelerator_count", f"expected >= 1 with accelerator_type {accelerator}, got 0")
    if count and not accelerator:
        r.fail("accelerator_type", f"is required when accelerator_count is {count}")
    timeout = r.string("timeout", _DURATION, "a duration in seconds like 86400s") or "86400s"
    strategy = (
        r.string(
            "scheduling_strategy",
            re.compile(rf"^({'|'.join(SCHEDULING_STRATEGIES)})$"),
            f"one of {', '.join(SCHEDULING_STRATEGIES)}",
        )
        or "STANDARD"
    )
    if strategy != "STANDARD" and not machine:
        r.fail("machine_type", f"is required with scheduling_strategy {strategy} (a custom job)")
    return TrainMachine(machine, accelerator, count, timeout, strategy)


_MODEL = re.compile(r"^projects/[^/]+/locations/[a-z0-9-]+/models/[0-9]+$")
_ENDPOINT = re.compile(r"^projects/[^/]+/locations/[a-z0-9-]+/endpoints/[0-9]+$")


def _model_upload(r: _Reader, region: str, image: str) -> ModelUpload | None:
    if not r.data:
        return None
    r.only(("display_name", "parent_model", "endpoint", "machine_type"))
    name = r.string("display_name", expected="the Vertex model's display name", required=True)
    if len(name) > 128:
        r.fail("display_name", f"expected at most 128 characters (Vertex's limit), got {len(name)}")
    parent = r.string(
        "parent_model", _MODEL, "a model resource name like projects/P/locations/R/models/ID"
    )
    endpoint = r.string(
        "endpoint", _ENDPOINT, "an endpoint resource name like projects/P/locations/R/endpoints/ID"
    )
    for key, value in (("parent_model", parent), ("endpoint", endpoint)):
        if value and value.split("/")[3] != region:
            r.fail(key, f"expected a resource in the environment's region {region}, got {value!r}")
    machine = r.string(
        "machine_type", re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$"), "a machine type like n1-standard-2"
    )
    if machine and not endpoint:
        r.fail("machine_type", "is the endpoint's machine: set endpoint too, or leave it out")
    return ModelUpload(name, region, image, parent, endpoint, machine or "n1-standard-2")


def _labels(r: _Reader) -> dict[str, str]:
    labels = {}
    for key, value in r.data.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            r.fail(
                str(key), "expected a label key: lowercase letter first, then a-z 0-9 - _ (63 max)"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (str, int))
            or not _LABEL_VALUE.match(str(value))
        ):
            r.fail(key, f"expected a label value: a-z 0-9 - _ (63 max), got {value!r}")
        labels[key] = str(value)
    return labels


def _beam_args(r: _Reader) -> tuple[str, ...]:
    args = r.data.get("beam_args") or []
    if not isinstance(args, list) or not all(
        isinstance(a, str) and a.startswith("--") for a in args
    ):
        r.fail(
            "beam_args",
            f"expected a list of Beam options like --runner=DataflowRunner, got {args!r}",
        )
    for arg in args:
        if arg.startswith("--temp_location=") and not arg.startswith("--temp_location=gs://"):
            r.fail("beam_args", f"expected a gs:// temp_location for Dataflow, got {arg!r}")
    return tuple(args)


def parse_env(data: Any, source: str, name: str = "") -> EnvConfig:
    """Validates the parsed YAML of an environment file.

    Args:
        data: The parsed YAML (a mapping).
        source: What to call the file in errors (its path).
        name: The environment's name; the file's base name when empty.

    Returns:
        The validated environment.

    Raises:
        EnvError: A field is missing or invalid.
    """
    r = _Reader(source, data)
    r.only(_TOP_KEYS)
    root = r.string("pipeline_root", expected="a gs:// folder", required=True)
    if not root.startswith("gs://") or len(root) <= len("gs://"):
        r.fail(
            "pipeline_root",
            f"expected a gs:// folder (Vertex writes artifacts there), got {root!r}",
        )
    # Required: without it the compiled default would run, a registry the user does not own.
    image = r.string(
        "image",
        IMAGE_REF,
        "an image reference like REGION-docker.pkg.dev/PROJECT/REPO/NAME:VERSION-GITSHA",
        required=True,
    )
    worker_image = r.string(
        "dataflow_worker_image",
        IMAGE_REF,
        "an image reference like REGION-docker.pkg.dev/PROJECT/REPO/NAME-dataflow-worker:TAG",
    ) or dataflow_worker_image(image)
    if not isinstance(r.data.get("labels") or {}, dict):
        r.fail("labels", "expected a mapping of label keys to values")
    labels = _labels(r.child("labels"))
    env = EnvConfig(
        name=name or os.path.splitext(os.path.basename(source))[0],
        source=source,
        project=r.string(
            "project", _PROJECT, "a GCP project id like my-project-123", required=True
        ),
        region=r.string("region", _REGION, "a region like europe-west4", required=True),
        pipeline_root=root.rstrip("/"),
        mlflow=_mlflow(r.child("mlflow")),
        service_account=r.string(
            "service_account",
            _SERVICE_ACCOUNT,
            "a service account e-mail like NAME@PROJECT.iam.gserviceaccount.com",
        ),
        network=r.string("network", _NETWORK, "projects/PROJECT_NUMBER/global/networks/NAME"),
        labels=labels,
        image=image,
        dataflow_worker_image=worker_image,
        resources=_resources(r.child("resources")),
        train=dataclasses.replace(_train(r.child("train")), labels=tuple(labels.items())),
        beam_args=_beam_args(r),
        model_upload=_model_upload(r.child("model_upload"), r.data.get("region", ""), image),
        prices=_prices(r),
    )
    env.pipeline_parameters()  # a Dataflow runner with no worker image fails here, by name
    return env


def load_env(path: str) -> EnvConfig:
    """Reads and validates ``configs/env/<name>.yaml`` (or any path).

    Args:
        path: The environment file.

    Returns:
        The validated environment.

    Raises:
        EnvError: The file cannot be read, is not YAML, or a field is invalid.
    """
    # The config files' strict reader: duplicate keys, encoding and syntax errors with lines.
    from trainer import config as cfg

    try:
        with open(path, "rb") as f:
            data = cfg.loads(cfg.decode(f.read()))
    except OSError as err:
        raise EnvError(path, "(file)", f"cannot read: {err.strerror}") from err
    except cfg.YamlProblem as err:
        at_line = f" (line {err.line})" if err.line else ""
        raise EnvError(path, err.key or "(file)", f"{err.problem}{at_line}") from err
    return parse_env(data, path)


def env_path(name_or_path: str) -> str:
    """``dev`` -> ``configs/env/dev.yaml``; a path (has / or .yaml) is returned as it is."""
    if os.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return name_or_path
    return os.path.join(ENV_DIR, f"{name_or_path}.yaml")
