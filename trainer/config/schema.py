"""The experiment config's schema: dataclasses with their defaults, and ``ConfigError``.

Each field's default is written here once; ``trainer/config/parse.py`` reads YAML into these
classes and validates every value. Standard library only. Over 400 lines: the whole schema of
the experiment file is here, one dataclass per section in file order (the search spaces'
included), so a default is found in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from trainer import contract

DEFAULT_MAX_RUNS = 50


# The names a feature config or a model config chooses from, each written here once; the
# config checks, the preprocessing and the model compare against these members.
class Transform(enum.StrEnum):
    """A feature's transform (``feature_configs[].buyer|product[].transform``)."""

    VOCABULARY = "vocabulary"
    HASHING = "hashing"
    BUCKETIZE = "bucketize"
    ZSCORE = "zscore"
    LOG = "log"
    TEXT = "text"
    TIME = "time"
    CROSS = "cross"
    HISTORY = "history"


class Optimizer(enum.StrEnum):
    """``model_configs[].optimizer``."""

    ADAGRAD = "adagrad"
    ADAM = "adam"
    SGD = "sgd"


class LrSchedule(enum.StrEnum):
    """``model_configs[].lr_schedule``: the learning rate over the training steps."""

    CONSTANT = "constant"
    COSINE = "cosine"
    EXPONENTIAL = "exponential"


class SearchStrategy(enum.StrEnum):
    """``search.strategy``: how a config's distributions become trials."""

    GRID = "grid"  # every point of finite distributions (choice, int_range)
    RANDOM = "random"  # ``search.trials`` distinct draws from ``search.seed``
    HALVING = "halving"  # the random trials, trained in rungs (``Search.rungs``)


class DistributionKind(enum.StrEnum):
    """The one key of a distribution given for a config field (``{loguniform: [a, b]}``)."""

    CHOICE = "choice"  # [v1, v2, ...]
    UNIFORM = "uniform"  # [low, high]
    LOGUNIFORM = "loguniform"  # [low, high], both above 0
    INT_RANGE = "int_range"  # [low, high] or [low, high, step], integers, high included


TRANSFORMS = tuple(t.value for t in Transform)
NUMERIC_TRANSFORMS = (Transform.BUCKETIZE, Transform.ZSCORE, Transform.LOG)
STRING_TRANSFORMS = (Transform.TEXT, Transform.VOCABULARY, Transform.HASHING, Transform.CROSS)
OPTIMIZERS = tuple(o.value for o in Optimizer)
LR_SCHEDULES = tuple(s.value for s in LrSchedule)
SEARCH_STRATEGIES = tuple(s.value for s in SearchStrategy)
DISTRIBUTION_KINDS = tuple(k.value for k in DistributionKind)
# A trial's config id is its searched config's id, this, and its number: ``logq~t03``.
TRIAL_SEPARATOR = "~"


class ConfigError(ValueError):
    """A config file or mapping that does not match the schema.

    The message reads ``<file>[:<line>]: <dotted field>: <what was expected>``.
    """

    def __init__(self, source: str, field: str, problem: str, line: int | None = None):
        self.source, self.field, self.problem, self.line = source, field, problem, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field}: {problem}")


@dataclasses.dataclass(frozen=True)
class Cleaning:
    """Row filters applied by ingest; each dropped row is counted under its reason."""

    min_quantity: float | None = 0.0  # rows with quantity <= this are dropped
    min_price: float | None = 0.0  # rows with price <= this are dropped
    drop_transaction_prefixes: tuple[str, ...] = ()  # e.g. "C" marks a cancellation


@dataclasses.dataclass(frozen=True)
class Split:
    """How interactions are split into train / eval / test."""

    strategy: str = "strict_time"
    train_end: dt.date | None = None  # strict_time: train is before this date
    eval_end: dt.date | None = None  # strict_time: eval is [train_end, eval_end), test after
    eval_fraction: float = 0.1  # random / buyer_holdout
    test_fraction: float = 0.1
    seed: int = 42

    def time_bounds(self) -> tuple[int, int]:
        """strict_time: (train_end, eval_end) at midnight UTC, in seconds since the epoch."""
        return tuple(
            int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())
            for d in (self.train_end, self.eval_end)
        )


@dataclasses.dataclass(frozen=True)
class Csv:
    """How a CSV source is laid out (Parquet sources ignore it)."""

    delimiter: str = ","
    header: bool = True  # false: columns are named by position "0", "1", ... or by ``names``
    names: tuple[str, ...] = ()  # column names of a file without a header row


# Timestamps given as numbers since 1970-01-01 UTC rather than text (dataset.timestamp_format).
EPOCH_FORMATS = {"epoch_s": "s", "epoch_ms": "ms"}
# A BigQuery column that is a TIMESTAMP or DATETIME already (or a string BigQuery casts).
NATIVE_TIMESTAMP = "native"
BIGQUERY_PREFIX = "bq://"


@dataclasses.dataclass(frozen=True)
class BigQuery:
    """A ``bq://`` source: a query instead of a table, and the order of tied rows."""

    query: str = ""  # a SELECT run as the source (then source is bq://PROJECT, who runs it)
    # A column ordering a buyer's rows of one moment (an invoice line number, an event id):
    # ties in the history column follow it, as they follow the row order of a file. Without
    # it they follow the product id (a table has no row order).
    order_column: str = ""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Where the interactions come from and how to read them."""

    name: str
    source: str  # a file, a glob (* or ?) of files, local or gs://; .gz is decompressed;
    # or bq://PROJECT.DATASET.TABLE (ingest then runs in BigQuery, trainer/ingest/bigquery.py)
    columns: dict[str, str]
    cleaning: Cleaning
    split: Split
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"  # a strftime format, epoch_s or epoch_ms
    csv: Csv = Csv()
    # Rows read at a time; ingest's memory is bounded by one chunk plus the largest buyer
    # partition. 0 reads the whole source at once (the in-memory path).
    chunk_rows: int = 200_000
    bigquery: BigQuery = BigQuery()

    @property
    def is_bigquery(self) -> bool:
        """Whether ingest reads BigQuery (a table or a query) rather than files."""
        return self.source.startswith(BIGQUERY_PREFIX)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input feature of a tower and how it is transformed and embedded."""

    name: str  # canonical column name
    transform: str
    embedding_dim: int = 32
    oov_buckets: int = 1
    min_frequency: int = 1
    hash_buckets: int = 1000
    num_buckets: int = 10
    max_length: int = 50  # text: tokens kept; history: products kept
    vocab_size: int = 10000  # text: most frequent tokens kept
    cross_with: str = ""  # cross: the other column


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """The features of both towers; one transform graph per feature config."""

    id: str
    name: str
    buyer: tuple[Feature, ...]
    product: tuple[Feature, ...]

    @property
    def has_history(self) -> bool:
        """Whether the buyer tower reads the purchase history."""
        return any(f.transform == Transform.HISTORY for f in self.buyer)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and optimisation of the two-tower model."""

    id: str
    name: str
    embedding_dim: int = 64
    tower_layers: tuple[int, ...] = ()
    dropout: float = 0.0
    l2: float = 0.0
    optimizer: str = Optimizer.ADAGRAD.value
    learning_rate: float = 0.1
    lr_schedule: str = LrSchedule.CONSTANT.value
    lr_decay_rate: float = 0.5  # exponential: factor per epoch
    temperature: float = 1.0
    logq_correction: bool = False  # subtract log(sampling probability) from in-batch logits
    # Sparse part: a learned weight per history rank. Needs a history feature; with a feature
    # config that has none the model has no sparse part (the run is tagged so).
    repurchase_scores: bool = False
    remove_accidental_hits: bool = False  # mask in-batch negatives equal to the positive


@dataclasses.dataclass(frozen=True)
class Training:
    """Training-loop params shared by every run of the experiment."""

    epochs: int = 5
    batch_size: int = 4096
    seed: int = 42  # the seed of a single run
    seeds: tuple[int, ...] = ()  # a sweep trains every pair once per seed; empty: (seed,)
    eval_batch_size: int = 8192
    early_stopping_patience: int = 0  # epochs without better validation recall@100; 0: off
    # exclude_seen: for domains without repeat purchases (ratings, content). Each buyer's
    # earlier items are left out of its top-k (validation, test, serving, baselines) and of
    # the evaluated pairs; the own-history baseline is not applicable.
    exclude_seen: bool = False
    # Retrain on train + eval for the best epoch count found on eval; the refit model is the
    # exported one, the eval-selected model's test recall is logged beside it.
    refit: bool = False
    # After the fit, scale the repurchase part (model configs with repurchase_scores) by the
    # factor of contract.REPURCHASE_SCALES with the best validation recall; the exported models
    # (the selected and the refit one) carry it.
    calibrate_repurchase: bool = False
    # A second stage in the evaluate step (trainer/rank): gradient-boosted trees re-rank the
    # retrieval stage's top-k and the strong baseline's list on dense (buyer, product)
    # features, fit on the validation window; kept when its cross-fitted validation recall
    # beats the retrieval stage's alone. The exported SavedModel stays the retrieval stage.
    ranking_stage: bool = False

    @property
    def sweep_seeds(self) -> tuple[int, ...]:
        """The seeds a sweep trains each pair with."""
        return self.seeds or (self.seed,)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A (feature config id, model config id) pair named in the ``grid`` section."""

    feature_config: str
    model_config: str


@dataclasses.dataclass(frozen=True)
class Grid:
    """Which pairs a sweep trains: every pair, or ``include``, less ``exclude``."""

    include: tuple[Pair, ...] = ()
    exclude: tuple[Pair, ...] = ()
    max_runs: int = DEFAULT_MAX_RUNS  # guard against a grid that would cost too much


@dataclasses.dataclass(frozen=True)
class Registry:
    """The MLflow Model Registry entry of the sweep's winner and the gate that promotes it."""

    # The registered model's name; empty: the experiment's name.
    model_name: str = ""
    # The k whose lift over the champion decides (one of contract.RECALL_KS).
    gate_k: int = contract.DEFAULT_GATE_K
    # Absolute recall@gate_k any slice (repeat / new targets, activity bands) may lose.
    slice_tolerance: float = contract.DEFAULT_SLICE_TOLERANCE


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Values a config field is searched over: the kind and its list as written."""

    kind: str  # a DistributionKind
    values: tuple  # choice: the options; uniform, loguniform: (low, high); int_range: (low,
    # high, step)

    @property
    def finite(self) -> bool:
        """Whether the values can be listed (a grid can take them)."""
        return self.kind in (DistributionKind.CHOICE, DistributionKind.INT_RANGE)

    def points(self) -> tuple:
        """Every value of a finite distribution, in order."""
        if self.kind == DistributionKind.INT_RANGE:
            low, high, step = self.values
            return tuple(range(low, high + 1, step))
        return self.values


@dataclasses.dataclass(frozen=True)
class Trial:
    """One concrete config drawn from a search space."""

    config_id: str  # <base id>~t<number>, e.g. logq~t03
    number: int  # 1-based, in grid order or draw order
    values: tuple[tuple[str, object], ...]  # (field path in the config, concrete value)


@dataclasses.dataclass(frozen=True)
class Space:
    """A feature or model config with distributions, and the trials it became."""

    section: str  # feature_configs or model_configs
    base_id: str
    base_name: str
    # (path in the config: a key, or tower, index and key; the distribution), in the order
    # of the schema's fields (the draws do not depend on the order of the YAML keys).
    fields: tuple[tuple[tuple, Distribution], ...]
    trials: tuple[Trial, ...]


@dataclasses.dataclass(frozen=True)
class Rung:
    """One rung of successive halving: how many runs train, and up to which epoch."""

    epochs: int
    runs: int


@dataclasses.dataclass(frozen=True)
class Search:
    """How the configs with distributions become trials (the ``search`` section).

    Each searched config gets its own trials (a grid, or ``trials`` draws); a sweep trains
    every pair of trials as it trains every pair of plain configs.
    """

    strategy: str = SearchStrategy.GRID.value
    trials: int = 10  # random, halving: distinct draws per searched config
    seed: int = 0  # random, halving: the draws depend on it and on the config's id only
    eta: int = 3  # halving: each rung keeps the best 1/eta of the runs ...
    min_epochs: int = 1  # halving: ... of a rung, the first training this many epochs

    def rungs(self, runs: int, epochs: int) -> tuple[Rung, ...]:
        """Successive halving's rungs for ``runs`` candidates trained up to ``epochs``.

        The first rung trains every run for ``min_epochs``; each next one keeps the best
        ``1/eta`` (at least one) and trains ``eta`` times as many epochs, the last one
        ``epochs``.
        """
        out, budget = [], min(self.min_epochs, epochs)
        while budget < epochs:
            out.append(Rung(budget, runs))
            runs, budget = max(1, runs // self.eta), min(budget * self.eta, epochs)
        return (*out, Rung(epochs, runs))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training of a sweep: a pair and a seed."""

    feature_config_id: str
    model_config_id: str
    seed: int

    @property
    def key(self) -> str:
        """Stable name of the run within a pipeline job (used to find it again on retry)."""
        return f"{self.feature_config_id}.{self.model_config_id}.seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment file."""

    experiment: str
    dataset: Dataset
    feature_configs: tuple[FeatureConfig, ...]
    model_configs: tuple[ModelConfig, ...]
    training: Training
    grid: Grid = Grid()
    registry: Registry = Registry()
    search: Search = Search()
    spaces: tuple[Space, ...] = ()  # derived from the configs' distributions, not written
    source: str = "<config>"

    @property
    def registered_model_name(self) -> str:
        """The MLflow registered model the sweep's winner becomes a version of."""
        return self.registry.model_name or self.experiment

    def resolve_seed(self, seed: int | None = None) -> int:
        """The seed a training uses: ``seed``, or ``training.seed`` when None or negative.

        Negative means unset: the components take ``seed: int = -1`` because kfp.local cannot
        pass an optional int left unset.
        """
        return self.training.seed if seed is None or seed < 0 else seed

    def feature_config(self, config_id: str = "") -> FeatureConfig:
        """The feature config with this id; the first one when ``config_id`` is empty."""
        return _pick(self.feature_configs, config_id, "feature_configs", self.source)

    def model_config(self, config_id: str = "") -> ModelConfig:
        """The model config with this id; the first one when ``config_id`` is empty."""
        return _pick(self.model_configs, config_id, "model_configs", self.source)

    @property
    def history_length(self) -> int:
        """Products kept in the derived history column: the most any feature config uses."""
        lengths = [
            f.max_length
            for fc in self.feature_configs
            for f in fc.buyer
            if f.transform == Transform.HISTORY
        ]
        return max(lengths, default=Feature.max_length)

    def trial(self, section: str, config_id: str) -> tuple[Space, Trial] | None:
        """The search space and trial a config of ``section`` is, None for a plain config."""
        for space in self.spaces:
            if space.section == section:
                for trial in space.trials:
                    if trial.config_id == config_id:
                        return space, trial
        return None

    def _names(self, section: str, config_id: str) -> set[str]:
        """The ids a grid pair may name a config by: its own, and its searched config's."""
        found = self.trial(section, config_id)
        return {config_id, found[0].base_id} if found else {config_id}

    def runs(self) -> list[RunSpec]:
        """Every training of the sweep: grid pairs x seeds, in config order.

        A pair of ``grid.include`` / ``grid.exclude`` naming a searched config's id stands
        for each of its trials.
        """

        def named(pairs, fc, mc) -> bool:
            fcs, mcs = self._names("feature_configs", fc), self._names("model_configs", mc)
            return any(p.feature_config in fcs and p.model_config in mcs for p in pairs)

        return [
            RunSpec(fc.id, mc.id, seed)
            for fc in self.feature_configs
            for mc in self.model_configs
            if (not self.grid.include or named(self.grid.include, fc.id, mc.id))
            and not named(self.grid.exclude, fc.id, mc.id)
            for seed in self.training.sweep_seeds
        ]

    @property
    def rungs(self) -> tuple[Rung, ...]:
        """Strategy halving: the rungs over every run of the sweep; otherwise none."""
        if self.search.strategy != SearchStrategy.HALVING:
            return ()
        return self.search.rungs(len(self.runs()), self.training.epochs)


def _pick(items, config_id, field, source):
    if not config_id:
        return items[0]
    for item in items:
        if item.id == config_id:
            return item
    known = ", ".join(repr(i.id) for i in items)
    raise ConfigError(source, field, f"no entry with id {config_id!r} (known: {known})")
