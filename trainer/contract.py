"""The product's vocabulary, defined once: the MLflow contract, columns, files and report views.

Every name that two parts of the product must agree on lives here: the params, tags and
metrics a run carries (and which way each metric improves), the canonical column names and
their types, the file names of each step's output folder, and the report's views and
defaults. ``components/``, ``pipelines/``, ``trainer/`` and ``reporting/`` import it; it
imports only the standard library, so compiling a pipeline or installing only the reporting
part still can. Over 400 lines on purpose: one home for every shared name is the point, and
splitting it would give a name two places to be looked for.
"""

from __future__ import annotations

# --- Metrics -----------------------------------------------------------------------------

# Recall is measured at these cut-offs everywhere (validation, test, baselines, report).
RECALL_KS: tuple[int, ...] = (10, 50, 100)

# Per-epoch history metrics (step = epoch).
METRIC_LOSS = "loss"
METRIC_VAL_LOSS = "val_loss"
METRIC_EPOCH_SECONDS = "epoch_seconds"
BEST_EPOCH = "best_epoch"
TEST_PAIRS = "test_pairs"
TEST_BUYERS = "test_buyers"

# Baselines evaluated on the same test split as the model.
BASELINE_POPULAR = "popular"
BASELINE_OWN_HISTORY = "own_history"
# The field's strong simple methods (trainer/retrieval/strong.py), tuned on validation and
# computed once per ingest output: TIFU-KNN where buyers re-buy, EASE (item-kNN above a
# catalog size where EASE's item-item matrix does not fit) where they do not.
BASELINE_TIFU_KNN = "tifu_knn"
BASELINE_EASE = "ease"
BASELINE_ITEM_KNN = "item_knn"
BASELINES: tuple[str, ...] = (
    BASELINE_POPULAR,
    BASELINE_OWN_HISTORY,
    BASELINE_TIFU_KNN,
    BASELINE_EASE,
    BASELINE_ITEM_KNN,
)


# The heuristics every evaluation computes itself (the strong ones come from the ingest folder).
HEURISTIC_BASELINES: tuple[str, ...] = (BASELINE_POPULAR, BASELINE_OWN_HISTORY)


def applicable_baselines(exclude_seen: bool) -> tuple[str, ...]:
    """The baselines a run reports.

    Own history and TIFU-KNN (both built on re-buying) mean nothing when earlier items are
    excluded; EASE and item-kNN are the references where they are.
    """
    if exclude_seen:
        return (BASELINE_POPULAR, BASELINE_EASE, BASELINE_ITEM_KNN)
    return (BASELINE_POPULAR, BASELINE_OWN_HISTORY, BASELINE_TIFU_KNN)


HIGHER = "higher"  # a metric that improves upwards (recall)
LOWER = "lower"  # a metric that improves downwards (loss)

_FINAL_PREFIX = "final_"
_BEST_PREFIX = "best_"


def val_recall_key(k: int) -> str:
    """Per-epoch validation recall metric name."""
    return f"val_recall_at_{k}"


def test_recall_key(k: int) -> str:
    """Test-split recall of the model."""
    return f"test_recall_at_{k}"


def selected_test_recall_key(k: int) -> str:
    """Test recall of the model selected on eval (trained on train only), before the refit.

    Logged only when ``training.refit`` retrained the exported model on train + eval; then
    ``test_recall_key`` is the refit (exported) model's.
    """
    return f"selected_test_recall_at_{k}"


def retrieval_test_recall_key(k: int) -> str:
    """Test recall of the retrieval stage alone, logged when the ranking stage was kept."""
    return f"retrieval_test_recall_at_{k}"


# ``training.ranking_stage`` (trainer/rank): the ranking stage's figures on validation,
# cross-fitted over the validation buyers (each half ranked by a ranker fit on the other),
# beside the retrieval stage's on the same buyers; whether it was kept (1) or not (0); the
# lift of the two stages over the retrieval stage alone on test, with its interval.
RANKING_KEPT = "ranking_kept"
RANKING_DIR = "ranking"  # the ranker's folder in the evaluate step's output (run: evaluation/)
RANKING_FILE = "ranking.json"  # what was fit, on what, how well, and the decision
RANKER_FILE = "ranker.joblib"
TAG_RANKING = "ranking_stage"  # kept / dropped, and why


def ranking_val_recall_key(k: int) -> str:
    """Cross-fitted validation recall of the two stages."""
    return f"ranking_val_recall_at_{k}"


def retrieval_val_recall_key(k: int) -> str:
    """Validation recall of the retrieval stage alone on the ranking stage's buyers."""
    return f"retrieval_val_recall_at_{k}"


def ranking_lift_key(k: int) -> str:
    """Test recall@k of the two stages minus the retrieval stage's alone (paired)."""
    return f"ranking_lift_at_{k}"


# ``training.calibrate_repurchase``: the factors the repurchase part is scaled by on trial
# (validation recall of each), the chosen one, and the validation recall with it.
REPURCHASE_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
REPURCHASE_SCALE = "repurchase_scale"
CALIBRATION_FILE = "repurchase_calibration.json"


def calibrated_val_recall_key(k: int) -> str:
    """Validation recall of the selected model with the chosen repurchase scale."""
    return f"calibrated_val_recall_at_{k}"


def refit_key(metric: str) -> str:
    """A per-epoch metric of the refit on train + eval (``refit_loss``, ``refit_epoch_seconds``)."""
    return f"refit_{metric}"


def baseline_recall_key(baseline: str, k: int) -> str:
    """Test-split recall of a heuristic baseline, logged into the model's run."""
    return f"baseline_{baseline}_recall_at_{k}"


# --- Per-buyer evaluation rows (the basis of intervals, verdicts and slices) --------------

# The evaluate step writes, per evaluated split, one long table: one row per (scorer, buyer),
# integer counts only, so any later analysis needs no model. Scorers: the model (in the test
# file the exported one; in the validation file the one chosen on validation, i.e.
# ``serving_selected`` with ``training.refit``), with ``training.refit`` the selected model on
# test too, and each applicable baseline (its name). A target is a distinct (buyer, product)
# pair of the split; it is a repeat target when the buyer bought the product before the split
# (train for validation, train + eval for test), else a new one.
PER_BUYER_TEST_FILE = "per_buyer_test.parquet"
PER_BUYER_VAL_FILE = "per_buyer_val.parquet"
EVALUATION_ARTIFACT_DIR = "evaluation"  # run artifacts: evaluation/per_buyer_{test,val}.parquet
SCORER = "model"  # the column naming the scorer of a row
SCORER_MODEL = "model"
SCORER_SELECTED = "selected"
# With ``training.ranking_stage`` kept (trainer/rank): the retrieval stage alone, the exported
# model's own lists, while ``SCORER_MODEL`` is the two stages (retrieval, then ranking).
SCORER_RETRIEVAL = "retrieval"
# Scorers that are the run's own models, never baselines (no lift is taken against them).
OWN_SCORERS: tuple[str, ...] = (SCORER_MODEL, SCORER_SELECTED, SCORER_RETRIEVAL)
PAIRS = "pairs"
REPEAT = "repeat"
NEW = "new"
TARGET_PARTS: tuple[str, ...] = ("", REPEAT, NEW)  # all targets, repeat ones, new ones


def pairs_column(part: str = "") -> str:
    """A per-buyer row's target count: ``pairs``, ``repeat_pairs``, ``new_pairs``."""
    return f"{part}_{PAIRS}" if part else PAIRS


def hits_column(k: int, part: str = "") -> str:
    """A per-buyer row's hits at k: ``hits_at_10``, ``repeat_hits_at_10``, ``new_hits_at_10``."""
    return f"{part}_hits_at_{k}" if part else f"hits_at_{k}"


def per_buyer_columns() -> tuple[str, ...]:
    """The count columns of a per-buyer table, after ``SCORER`` and ``BUYER_ID``."""
    out: list[str] = []
    for part in TARGET_PARTS:
        out += [pairs_column(part), *(hits_column(k, part) for k in RECALL_KS)]
    return tuple(out)


# --- Slices: where a model wins (trainer/retrieval/slices.py, trainer/evaluate/slices.py) --

# The per-buyer rows also carry what the slices need, in a few small columns: the buyer's
# number of distinct days with a purchase before the split (``earlier_days``: train for
# validation, train + eval for test) and the target pairs and hits at each k among head, torso
# and tail products. A product's popularity band comes from its train interactions: products
# ranked by them (ties: catalog order), head while the products ranked above hold under 20% of
# all train interactions, torso under 50%, tail the rest (products never bought in train too).
EARLIER_DAYS = "earlier_days"
POPULARITY_HEAD = "head"
POPULARITY_TORSO = "torso"
POPULARITY_TAIL = "tail"
# (band, the share of train interactions held by the products above at which it ends)
POPULARITY_BANDS: tuple[tuple[str, float], ...] = (
    (POPULARITY_HEAD, 0.2),
    (POPULARITY_TORSO, 0.5),
    (POPULARITY_TAIL, 1.0),
)
POPULARITY_PARTS: tuple[str, ...] = tuple(name for name, _ in POPULARITY_BANDS)
# Buyer activity by earlier purchase days: (slice name, label, lowest days, highest or None).
ACTIVITY_DAY_BANDS: tuple[tuple[str, str, int, int | None], ...] = (
    ("days_1", "1 earlier purchase day", 1, 1),
    ("days_2_4", "2-4 earlier purchase days", 2, 4),
    ("days_5_9", "5-9 earlier purchase days", 5, 9),
    ("days_10_plus", "10+ earlier purchase days", 10, None),
)
# Every slice of the test split the evaluate step logs, in the slices view's order: (name,
# label, group). Target slices split each buyer's pairs; activity slices split the buyers.
SLICE_TARGETS = "targets"
SLICE_ACTIVITY = "activity"
SLICE_POPULARITY = "popularity"
SLICES: tuple[tuple[str, str, str], ...] = (
    (REPEAT, "repeat targets (bought before)", SLICE_TARGETS),
    (NEW, "new targets", SLICE_TARGETS),
    *((name, label, SLICE_ACTIVITY) for name, label, _, _ in ACTIVITY_DAY_BANDS),
    (POPULARITY_HEAD, "head products (top 20% of train interactions)", SLICE_POPULARITY),
    (POPULARITY_TORSO, "torso products (next 30%)", SLICE_POPULARITY),
    (POPULARITY_TAIL, "tail products (the rest)", SLICE_POPULARITY),
)
# Slices are logged at this k only: every slice at every k would triple the metrics a run
# carries (the report reads them all for 1,000 runs); the per-buyer rows hold every k.
SLICE_K = max(RECALL_KS)


def band_columns(ks=RECALL_KS) -> tuple[str, ...]:
    """The per-buyer columns the slices add: earlier days, then each popularity band's counts."""
    out = [EARLIER_DAYS]
    for part in POPULARITY_PARTS:
        out += [pairs_column(part), *(hits_column(k, part) for k in ks)]
    return tuple(out)


def _scorer_prefix(scorer: str) -> str:
    return "test" if scorer == SCORER_MODEL else f"baseline_{scorer}"


def slice_recall_key(name: str, k: int, scorer: str = SCORER_MODEL) -> str:
    """Test recall@k within a slice: ``test_new_recall_at_100``, ``baseline_popular_new_...``."""
    return f"{_scorer_prefix(scorer)}_{name}_recall_at_{k}"


def slice_lift_key(name: str, baseline: str, k: int) -> str:
    """The model's recall@k minus the baseline's within a slice: ``new_lift_vs_popular_at_100``."""
    return f"{name}_lift_vs_{baseline}_at_{k}"


def slice_pairs_key(name: str) -> str:
    """Test target pairs within a slice: ``test_new_pairs``."""
    return f"test_{name}_pairs"


# Beyond accuracy, per scorer from its test top-k lists at each k: the share of the catalog
# that appears in any list, the mean popularity rank of the recommended products (1: the most
# train interactions), and the share of recommended slots that hold a tail product.
BEYOND_COVERAGE = "coverage"
BEYOND_POPULARITY_RANK = "mean_popularity_rank"
BEYOND_TAIL_SHARE = "tail_share"
BEYOND_FIGURES: tuple[str, ...] = (BEYOND_COVERAGE, BEYOND_POPULARITY_RANK, BEYOND_TAIL_SHARE)


def beyond_key(figure: str, k: int, scorer: str = SCORER_MODEL) -> str:
    """A beyond-accuracy figure: ``test_coverage_at_100``, ``baseline_popular_tail_share_at_10``."""
    return f"{_scorer_prefix(scorer)}_{figure}_at_{k}"


# --- Uncertainty: a paired bootstrap over the per-buyer rows (trainer/retrieval/bootstrap.py)

# Buyers are resampled with replacement, the same draws for every scorer (paired); inside a
# resample recall is micro-averaged over pairs. Intervals are percentile intervals at
# BOOTSTRAP_CONFIDENCE. A lift's verdict tests "lift = 0" two-sided at 1 - BOOTSTRAP_CONFIDENCE
# with the p-values of every (baseline, k) of a run Holm-corrected together.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
BOOTSTRAP_CONFIDENCE = 0.95
VERDICT_BEATS = "beats"  # the lift is above zero after the Holm correction
VERDICT_TIED = "tied"
VERDICT_WORSE = "worse"  # the lift is below zero after the Holm correction
# How the intervals and verdicts of a run were made (resamples, seed, level, family).
TAG_BOOTSTRAP = "bootstrap"


def chosen_val_recall_key(k: int) -> str:
    """Validation recall of the model chosen on validation, as served (per-buyer val rows).

    The best epoch's ``best_val_recall_at_<k>``, with the calibration's scale when
    ``training.calibrate_repurchase`` chose one (then ``calibrated_val_recall_at_<k>``).
    """
    return f"chosen_val_recall_at_{k}"


def ci_low_key(metric: str) -> str:
    """Lower end of a metric's bootstrap interval: ``test_recall_at_100_ci_low``."""
    return f"{metric}_ci_low"


def ci_high_key(metric: str) -> str:
    """Upper end of a metric's bootstrap interval: ``test_recall_at_100_ci_high``."""
    return f"{metric}_ci_high"


def lift_key(baseline: str, k: int) -> str:
    """Test recall@k of the model minus the baseline's (absolute lift)."""
    return f"lift_vs_{baseline}_at_{k}"


def relative_lift_key(baseline: str, k: int) -> str:
    """Test recall@k of the model over the baseline's, minus one (relative lift)."""
    return f"relative_lift_vs_{baseline}_at_{k}"


def lift_p_holm_key(baseline: str, k: int) -> str:
    """Holm-adjusted bootstrap p-value of "lift = 0" (over every baseline and k of the run)."""
    return f"lift_vs_{baseline}_at_{k}_p_holm"


def verdict_tag(baseline: str, k: int | None = None) -> str:
    """Tag holding beats / tied / worse against a baseline: at k, or (no k) at max(RECALL_KS)."""
    return f"verdict_vs_{baseline}" if k is None else f"verdict_vs_{baseline}_at_{k}"


# Tied with the best: the sweep's best-model step (reporting/best.py) pairs the leader's
# per-buyer validation rows with each compared run's (the same buyers) and tags every run it
# judged with the leader's id, whether it is tied with it (the 95% paired bootstrap interval
# of "run - leader" recall@k on validation holds zero; k: the rank metric's), the difference
# and its interval. At most TIE_CHECK_RUNS runs (best first) are judged per call: a sweep
# rarely holds more, and each costs a download of tens of KiB and one more bootstrap column.
TAG_BEST_RUN_ID = "best_run_id"
TAG_TIED_WITH_BEST = "tied_with_best"  # "true" / "false"
TAG_DIFF_VS_BEST = "diff_vs_best"  # "-0.0123": run - leader, recall@k on validation
TAG_DIFF_VS_BEST_CI = "diff_vs_best_ci"  # "[-0.0200, -0.0046]"
TAG_TIE_TEST = "tie_test"  # how: buyers, k, resamples, seed, level
TIE_CHECK_RUNS = 100


def final_key(metric: str) -> str:
    """Last-epoch value of a history metric."""
    return f"{_FINAL_PREFIX}{metric}"


def best_key(metric: str) -> str:
    """Value of a history metric at the best epoch."""
    return f"{_BEST_PREFIX}{metric}"


def history_metrics() -> list[str]:
    """The metrics logged once per epoch whose curves the report draws."""
    return [METRIC_LOSS, METRIC_VAL_LOSS] + [val_recall_key(k) for k in RECALL_KS]


# The metric training selects its best epoch by; its best epoch's value is the one the report
# ranks by and the sweep picks its best run by, by default: choices are made on validation,
# test metrics are shown beside them and never used to choose.
SELECTION_METRIC = val_recall_key(max(RECALL_KS))
DEFAULT_RANK_METRIC = f"{_BEST_PREFIX}{SELECTION_METRIC}"  # best_val_recall_at_100


def on_validation(metric: str) -> bool:
    """Whether ``metric`` is measured on the validation split (fit to choose by).

    The per-epoch ``val_*`` metrics and their ``best_`` / ``final_`` values, the calibrated
    and the chosen model's validation recall; test metrics and baselines are not.
    """
    name = metric
    for prefix in (_BEST_PREFIX, _FINAL_PREFIX, "calibrated_", "chosen_"):
        name = name.removeprefix(prefix)
    return name.startswith("val_")


def recall_k(metric: str) -> int | None:
    """The k of a ``..._recall_at_<k>`` metric (any prefix), else None."""
    head, sep, tail = metric.rpartition("_at_")
    if sep and head.endswith("recall") and tail.isdigit():
        return int(tail)
    return None


def metric_direction(metric: str) -> str | None:
    """Which way ``metric`` improves: ``HIGHER``, ``LOWER``, or None (e.g. lr, best_epoch).

    The product's own metrics are recall (higher) and losses (lower). Metrics other tools
    logged into the experiment are judged by their name: losses and errors improve downwards,
    the usual quality measures upwards, anything else has no direction.
    """
    name = metric.lower()
    if name in (BEST_EPOCH, TEST_PAIRS, TEST_BUYERS, METRIC_EPOCH_SECONDS):
        return None
    if name.endswith("_p_holm"):  # a p-value: no better or worse
        return None
    parts = set(name.replace("@", "_").split("_"))
    if parts & {"loss", "error", "rmse", "mae", "mse"}:
        return LOWER
    if "lift" in parts:
        return HIGHER
    if parts & {"recall", "precision", "accuracy", "auc", "ndcg", "mrr", "f1", "hitrate", "hits"}:
        return HIGHER
    return None


def history_metric_of(metric: str) -> str:
    """The per-epoch metric that goes with a summary or test metric.

    ``final_loss`` -> ``loss``; ``test_recall_at_50`` -> ``val_recall_at_50``; a metric
    without a per-epoch counterpart gets the selection metric.
    """
    history = history_metrics()
    if metric in history:
        return metric
    for prefix in (_FINAL_PREFIX, _BEST_PREFIX):
        if metric.startswith(prefix) and metric[len(prefix) :] in history:
            return metric[len(prefix) :]
    k = recall_k(metric)
    if k in RECALL_KS:
        return val_recall_key(k)
    return SELECTION_METRIC


# --- Params and tags ---------------------------------------------------------------------

# Params every run carries under exactly these names (the rest of the resolved config keeps
# its flattened dotted name, e.g. ``model.temperature``).
PARAM_EPOCHS = "epochs"
PARAM_BATCH_SIZE = "batch_size"
PARAM_LEARNING_RATE = "learning_rate"
PARAM_OPTIMIZER = "optimizer"
PARAM_EMBEDDING_DIM = "embedding_dim"
PARAM_FEATURE_CONFIG_ID = "feature_config_id"
PARAM_MODEL_CONFIG_ID = "model_config_id"
PARAM_DATASET_ID = "dataset_id"
PARAM_SEED = "seed"
# A run whose model or feature config is a trial of a search space (the config's ``search``
# section) also carries these; the drawn values themselves are in the config's own params
# (``learning_rate``, ``model.dropout``, ``feature.buyer.history.max_length``, ...), and
# ``search.drawn`` names those params.
PARAM_SEARCH_STRATEGY = "search.strategy"
PARAM_SEARCH_SEED = "search.seed"  # random, halving
PARAM_SEARCH_ETA = "search.eta"  # halving
PARAM_SEARCH_MIN_EPOCHS = "search.min_epochs"  # halving
PARAM_SEARCH_DRAWN = "search.drawn"  # comma-separated names of the params that were drawn


def search_base_param(section: str) -> str:
    """The param holding the id of the searched config a trial comes from.

    ``section``: ``model_config`` or ``feature_config``.
    """
    return f"search.{section}.base_id"


def search_trial_param(section: str) -> str:
    """The param holding a trial's 1-based number within its search space."""
    return f"search.{section}.trial"


# Successive halving (``search.strategy: halving``, pipelines/halving.py): each trial's run is
# trained rung by rung, the same MLflow run and checkpoint carried on. After each rung the
# training tags the rung it reached, its epochs so far and its validation value there (the
# best epoch's ``SELECTION_METRIC`` so far); the selection between rungs tags each trial
# continued or stopped, a stopped one with why. A stopped trial's run stays FINISHED, is never
# evaluated on test and never competes to be the sweep's best.
TAG_HALVING_RUNG = "halving.rung"  # "2": the last rung the trial trained in (1-based)
TAG_HALVING_RUNGS = "halving.rungs"  # "3": the sweep's rungs
TAG_HALVING_EPOCHS = "halving.epochs"  # "3": epochs trained through that rung
TAG_HALVING_STATUS = "halving.status"
TAG_HALVING_REASON = "halving.reason"  # "rung 1 of 3: val_recall_at_100 0.3100 below ..."
HALVING_TRAINED = "trained"  # a rung's training ended; the selection has not judged it yet
HALVING_CONTINUED = "continued"  # among the best 1/eta of its rung: trains in the next
HALVING_STOPPED = "stopped"  # below them: its run ends at this rung
HALVING_COMPLETED = "completed"  # trained through the last rung: evaluated, competes


def halving_rung_value_tag(rung: int) -> str:
    """A trial's validation value at a rung, a tag: ``halving.rung_1.val_recall_at_100``."""
    return f"halving.rung_{rung}.{SELECTION_METRIC}"


TAG_FEATURE_CONFIG_NAME = "feature_config_name"
TAG_MODEL_CONFIG_NAME = "model_config_name"
TAG_DATASET_NAME = "dataset_name"
TAG_MODEL_TYPE = "model_type"
TAG_PIPELINE_JOB = "kfp.pipeline_job"
TAG_PIPELINE_TASK = "kfp.task"
TAG_TRACKING_DEGRADED = "tracking_degraded"
TAG_FAILURE_REASON = "failure_reason"
TAG_MODEL_URI = "kfp.model_uri"  # where the train step wrote the model (its artifact URI)
# A caller-chosen key naming one logical run: a retried step with the same key reuses the run.
TAG_RUN_KEY = "run_key"
# Set when a model config asks for repurchase scores but the feature config has no history.
TAG_REPURCHASE_SCORES = "repurchase_scores"
# Comma-separated baselines that do not apply to the run (not logged; the report shows n/a):
# with ``training.exclude_seen`` the own-history baseline recommends only excluded items.
TAG_BASELINES_NOT_APPLICABLE = "baselines_not_applicable"
MODEL_TYPE_TWO_TOWER = "two_tower_retrieval"
# Comparable runs only: the evaluate step tags each run with its protocol's parts and a key
# made of them (trainer/inputs/protocol.py); the report ranks, tests and fills the heatmap only
# among runs with the reference run's key and lists the others apart, naming the part that
# differs. Parts: a digest of the cleaned interactions (every split, split-independent), the
# split strategy with its dates or fractions and seed, the catalog size, and the evaluation
# protocol's version (with ``+exclude_seen`` when only new pairs are evaluated).
TAG_PROTOCOL_KEY = "protocol_key"
TAG_PROTOCOL_DATASET = "protocol.dataset_digest"
TAG_PROTOCOL_SPLIT = "protocol.split"
TAG_PROTOCOL_CATALOG = "protocol.catalog_size"
TAG_PROTOCOL_EVALUATION = "protocol.evaluation"
PROTOCOL_PARTS: tuple[str, ...] = (
    TAG_PROTOCOL_DATASET,
    TAG_PROTOCOL_SPLIT,
    TAG_PROTOCOL_CATALOG,
    TAG_PROTOCOL_EVALUATION,
)
# Bump when what an evaluation measures changes (pairs, catalog, averaging), so that runs
# measured the old way are not ranked against new ones. 1: distinct (buyer, product) pairs
# of buyers and products seen in train, exact top-k over the whole catalog, recall
# micro-averaged over pairs, per-buyer rows.
EVALUATION_PROTOCOL_VERSION = "eval-1"
# Liveness of a run. While a tracker holds a run open it sets ``heartbeat_at`` (UTC,
# ISO-8601 to the second, "2026-12-02T13:45:00Z") when the run starts and then about every
# HEARTBEAT_INTERVAL_S. A RUNNING run silent for longer than LOST_AFTER_S (its heartbeat,
# else its start time) has lost its process (an OOM kill, a preempted machine): the report
# and the sweep's last steps show it as lost and end it FAILED once, tagged ``lost`` with
# the time it was last heard from. A retried step that takes the run over clears ``lost``.
TAG_HEARTBEAT = "heartbeat_at"
TAG_LOST = "lost"
HEARTBEAT_INTERVAL_S = 60
LOST_AFTER_S = 15 * 60

# MLflow run statuses the product writes and reads.
STATUS_FINISHED = "FINISHED"
STATUS_FAILED = "FAILED"
STATUS_KILLED = "KILLED"
STATUS_RUNNING = "RUNNING"

# --- Columns -----------------------------------------------------------------------------

# Canonical column names; a dataset's ``columns`` maps them to the source's names.
BUYER_ID = "buyer_id"
PRODUCT_ID = "product_id"
TIMESTAMP = "timestamp"  # seconds since the epoch, UTC, after ingest
QUANTITY = "quantity"
PRICE = "price"
TRANSACTION_ID = "transaction_id"
DESCRIPTION = "description"
COUNTRY = "country"
REQUIRED_COLUMNS = (BUYER_ID, PRODUCT_ID, TIMESTAMP)
OPTIONAL_COLUMNS = (QUANTITY, PRICE, TRANSACTION_ID, DESCRIPTION, COUNTRY)
SOURCE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

# Point-in-time buyer columns that ingest derives (trainer/inputs/buyer_features.py).
HISTORY = "history"  # space-joined product ids, most bought first, then most recent
RECENCY_DAYS = "recency_days"  # days since the buyer's previous purchase (-1: none)
FREQUENCY = "frequency"  # distinct earlier purchase moments (invoices)
MONETARY = "monetary"  # earlier spend, sum of quantity x price
DERIVED_COLUMNS = (HISTORY, RECENCY_DAYS, FREQUENCY, MONETARY)

# Catalog column: train interactions per product (the in-batch sampling frequency).
TRAIN_COUNT = "train_count"

STRING = "string"
FLOAT = "float"
INT = "int"
# Every raw column after ingest and its type, in frames, tf.Examples and the serving signature.
RAW_COLUMN_TYPES: dict[str, str] = {
    BUYER_ID: STRING,
    PRODUCT_ID: STRING,
    TRANSACTION_ID: STRING,
    DESCRIPTION: STRING,
    COUNTRY: STRING,
    HISTORY: STRING,
    QUANTITY: FLOAT,
    PRICE: FLOAT,
    RECENCY_DAYS: FLOAT,
    FREQUENCY: FLOAT,
    MONETARY: FLOAT,
    TIMESTAMP: INT,
}


# The source's string and number columns, in SOURCE_COLUMNS order (the timestamp is parsed on
# its own): what ingest reads and cleans, in pandas and in BigQuery alike.
SOURCE_STRING_COLUMNS = tuple(c for c in SOURCE_COLUMNS if RAW_COLUMN_TYPES[c] == STRING)
SOURCE_FLOAT_COLUMNS = tuple(c for c in SOURCE_COLUMNS if RAW_COLUMN_TYPES[c] == FLOAT)


# --- Cloud names ---------------------------------------------------------------------------

# A Google Cloud project id (6-30 characters: a letter first, no hyphen last): an env file's
# project and a bq:// source's project are both checked against it.
GCP_PROJECT_ID = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"


# --- Step outputs ------------------------------------------------------------------------

# The pipeline's steps, in order (an env file's resources are keyed by them); `python -m
# trainer` runs all but the report.
STEPS = ("ingest", "transform", "train", "evaluate", "report")
TRAINER_STEPS = STEPS[:-1]

# --- Cost: what each step ran on, for how long, and what that is estimated to cost ----------

# Each of the trainer steps writes a record into its output folder (STEP_RECORD_FILE): its wall
# seconds, its machine (type, vCPUs, accelerator type and count, scheduling), and an id of
# that execution. The evaluate step (a run's last) logs them into the run with the estimated
# cost of each from the price table (trainer/cost/prices.yaml, overridden by an environment
# file's ``prices:``). Ingest and transform are shared by the runs of a sweep (and by later
# pipeline runs that reuse their cached outputs): each run logs the whole shared step under
# its execution id, and the report divides it among the runs that carry the same id.
STEP_RECORD_FILE = "step_cost.json"
COST_STEPS = TRAINER_STEPS
SHARED_STEPS = ("ingest", "transform")
OWN_STEPS = ("train", "evaluate")
COST_USD = "cost.usd"  # the run's own steps (train + evaluate), estimated
COST_MACHINE_SECONDS = "cost.machine_seconds"  # wall seconds of the run's own steps' machines
TAG_COST_PRICES = "cost.prices"  # which table: "USD as of 2026-12-03; overridden: machines.x"
# What a step's machine is called when it is not a custom job's: a step of Vertex AI Pipelines
# (Vertex picks its machine from the step's limits) or anything else (a laptop, kfp.local).
MACHINE_VERTEX_STEP = "vertex-pipeline-step"
MACHINE_LOCAL = "local"
# The training custom job's machine reaches its step through these environment variables
# (pipelines/tasks.py sets them on the job's worker pool; an ordinary step has none).
ENV_MACHINE_TYPE = "B2B_RECS_MACHINE_TYPE"
ENV_ACCELERATOR_TYPE = "B2B_RECS_ACCELERATOR_TYPE"
ENV_ACCELERATOR_COUNT = "B2B_RECS_ACCELERATOR_COUNT"
ENV_SCHEDULING = "B2B_RECS_SCHEDULING_STRATEGY"
# Vertex AI Pipelines gives every step its run's labels as JSON in this variable, the billing
# id among them (https://cloud.google.com/vertex-ai/docs/pipelines/gcpc-label-propagation,
# "Resources generated from user-defined components"); kfp's executor reads it to tell
# Vertex from elsewhere too.
ENV_VERTEX_RUN_LABELS = "VERTEX_AI_PIPELINES_RUN_LABELS"
BILLING_LABEL = "vertex-ai-pipelines-run-billing-id"


def cost_seconds_key(step: str) -> str:
    """Wall seconds of a step: ``cost.train.seconds``."""
    return f"cost.{step}.seconds"


def cost_usd_key(step: str) -> str:
    """Estimated cost of a step, whole (a shared step's too): ``cost.transform.usd``."""
    return f"cost.{step}.usd"


def cost_vcpus_key(step: str) -> str:
    """The vCPUs of a step's machine: ``cost.evaluate.vcpus``."""
    return f"cost.{step}.vcpus"


def cost_accelerator_count_key(step: str) -> str:
    """Accelerators of a step's machine: ``cost.train.accelerator_count``."""
    return f"cost.{step}.accelerator_count"


def cost_machine_tag(step: str) -> str:
    """Machine type of a step (or MACHINE_VERTEX_STEP / MACHINE_LOCAL): ``cost.train.machine``."""
    return f"cost.{step}.machine"


def cost_accelerator_tag(step: str) -> str:
    """Accelerator type of a step ("" none): ``cost.train.accelerator``."""
    return f"cost.{step}.accelerator"


def cost_scheduling_tag(step: str) -> str:
    """Scheduling of a step's machine (STANDARD, SPOT, FLEX_START): ``cost.train.scheduling``."""
    return f"cost.{step}.scheduling"


def cost_execution_tag(step: str) -> str:
    """Id of the step's execution: runs with the same one shared it (``cost.ingest.execution``)."""
    return f"cost.{step}.execution"


# Why ingest dropped a row (the keys of stats.json's ``rows_dropped``); the file path and the
# BigQuery SQL check in this order and count a row under its first failing reason.
DROP_CANCELLED = "cancelled"


def drop_missing(column: str) -> str:
    """A required column is empty."""
    return f"missing_{column}"


def drop_unparsable(column: str) -> str:
    """The timestamp or a number column does not parse."""
    return f"bad_{column}"


def drop_at_most(column: str, threshold: float) -> str:
    """A number column is at or below the cleaning threshold (``quantity_le_0``)."""
    return f"{column}_le_{threshold:g}"


SPLITS = ("train", "eval", "test")
# Ingest folder: {split}.parquet, {split}.tfrecord.gz, and these.
CATALOG_FILE = "catalog.parquet"
SCHEMA_FILE = "schema.pbtxt"
STATS_FILE = "stats.json"
# The strong baselines' top-k lists for the eval and test buyers (trainer/retrieval/strong.py)
# and what was chosen on validation: computed once per ingest output, read by every evaluation.
STRONG_BASELINES_FILE = "strong_baselines.parquet"
STRONG_BASELINES_RECORD = "strong_baselines.json"
# Transform folder: the TFTransformOutput plus transformed/{split}-*.tfrecord.gz.
TRANSFORMED_DIR = "transformed"
# Model folder.
SERVING_DIR = "serving"
# With ``training.refit``: the model selected on eval (train only), evaluated beside SERVING_DIR.
SELECTED_SERVING_DIR = "serving_selected"
CONFIG_FILE = "experiment.yaml"
RUN_INFO_FILE = "mlflow_run.json"
BACKLOG_FILE = "mlflow_backlog.jsonl"
# Every operation a tracker accepted, appended before it is queued (a backlog's format), and
# how many of its lines MLflow holds (``<journal>.progress``): what a killed step logged.
JOURNAL_FILE = "mlflow_journal.jsonl"
# Training's per-epoch state (model, optimizer, epoch, best epoch, early stopping), so a
# killed or preempted training resumes where it was.
CHECKPOINT_DIR = "checkpoint"
# Evaluation folder.
METRICS_FILE = "metrics.json"
TOP_K_FILE = "top_k.parquet"
# The serving model returns this many products per query.
SERVING_K = max(RECALL_KS)
# The strong baselines' lists are this long: their top max(k) are the baseline, and the
# ranking stage (trainer/rank) takes the whole list as candidates beside the model's. Chosen
# on Online Retail's validation window (bench/RESULTS.md, "The ranking stage": cross-fitted
# recall@100 0.3515 / 0.3532 / 0.3570 / 0.3597 / 0.3600 with 200 / 300 / 500 / 700 / 1,000),
# the shortest list within 0.001 of the best; the stage's cost is linear in it.
STRONG_LIST_K = 7 * max(RECALL_KS)

# --- Report ------------------------------------------------------------------------------

# The report's views, in page order; each is an HTML output of render_report.
VIEW_DASHBOARD = "dashboard"
VIEW_LEADERBOARD = "leaderboard"
VIEW_COMPARISON = "comparison"
VIEW_TRAINING_CURVES = "training_curves"
VIEW_HEATMAP = "heatmap"
VIEW_RECALL_AT_K = "recall_at_k"
VIEW_SLICES = "slices"
VIEWS: tuple[str, ...] = (
    VIEW_DASHBOARD,
    VIEW_LEADERBOARD,
    VIEW_COMPARISON,
    VIEW_TRAINING_CURVES,
    VIEW_HEATMAP,
    VIEW_RECALL_AT_K,
    VIEW_SLICES,
)
VIEW_COMBINED = "report"  # every view on one page
VIEW_TITLES: dict[str, str] = {
    VIEW_COMBINED: "Experiment report",
    VIEW_DASHBOARD: "Dashboard",
    VIEW_LEADERBOARD: "Leaderboard",
    VIEW_COMPARISON: "Run comparison",
    VIEW_TRAINING_CURVES: "Training curves",
    VIEW_HEATMAP: "Config heatmap",
    VIEW_RECALL_AT_K: "Recall@k and params",
    VIEW_SLICES: "Where it wins",
}
SUMMARY_FILE = "summary.md"
# Runs (best first) with their own chart and epoch table on the training-curves page.
DEFAULT_DETAIL_RUNS = 12
# Runs the comparison shows when none are named.
DEFAULT_TOP_N = 5
# Runs listed one by one in the report's tables and drawn in its run charts (best first, plus
# the highlighted run and pipeline job's): the leaderboard, the overview curves, the parallel
# coordinates. The others are aggregated per (feature config, model config) pair and said so;
# the heatmap and the means count every run. Keeps each page under 5 MiB at 10,000 runs.
REPORT_LISTED_RUNS = 200

# --- MLflow model, registry and promotion ------------------------------------------------

# The served model as an MLflow pyfunc model (trainer/serving/mlflow_model.py): saved beside
# the SavedModel in the train folder and logged to the run under this artifact path, so
# ``runs:/<run id>/model`` is what ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and
# the Model Registry take.
MLFLOW_MODEL_DIR = "mlflow_model"
MLFLOW_MODEL_ARTIFACT = "model"
# Artifact key of the SavedModel inside the MLflow model (``context.artifacts[...]``).
MLFLOW_MODEL_SAVED_MODEL = "saved_model"
# The pyfunc's output columns and its one inference parameter (products per buyer, <= SERVING_K).
OUTPUT_PRODUCT_IDS = "product_ids"
OUTPUT_SCORES = "scores"
PARAM_SERVE_K = "k"
# Registered-model aliases: the sweep's winner waiting for the gate, and the served model.
ALIAS_CHALLENGER = "challenger"
ALIAS_CHAMPION = "champion"
# Model-version tags (the run's own tags and metrics are copied under these names).
TAG_VERSION_RUN_ID = "run_id"
TAG_VERSION_FEATURE_CONFIG = "feature_config_id"
TAG_VERSION_MODEL_CONFIG = "model_config_id"
TAG_VERSION_SEED = "seed"
TAG_VERSION_PIPELINE_JOB = "pipeline_job"
TAG_VERSION_PROTOCOL_KEY = "protocol_key"
TAG_VERSION_METRIC_PREFIX = "metric."  # metric.best_val_recall_at_100, metric.test_recall_at_100
# The gate's verdict on a version (tags gate.*) and its one-word output.
GATE_PROMOTE = "PROMOTE"
GATE_REJECT = "REJECT"
GATE_INCONCLUSIVE = "INCONCLUSIVE"
GATE_DECISIONS: tuple[str, ...] = (GATE_PROMOTE, GATE_REJECT, GATE_INCONCLUSIVE)
TAG_GATE_DECISION = "gate.decision"
TAG_GATE_REASON = "gate.reason"
TAG_GATE_CHAMPION = "gate.champion_version"  # the version compared with ("" when none)
TAG_GATE_FIGURES = "gate.figures"  # JSON: lift and interval at k, each slice's change
TAG_GATE_DECIDED_AT = "gate.decided_at"
TAG_PROMOTED_AT = "promoted_at"
TAG_PROMOTED_FROM = "promoted_from_version"  # the champion it replaced ("" when none)
TAG_VERTEX_MODEL = "vertex.model"  # the Vertex Model Registry resource it was uploaded as
# Gate defaults (the experiment YAML's registry section can change them): the k whose lift
# decides, and how much absolute recall@k any slice may lose before the gate says REJECT.
DEFAULT_GATE_K = 100
DEFAULT_SLICE_TOLERANCE = 0.01
# Activity bands of the gate's slices, by the buyer's test target pairs (what the per-buyer
# rows carry): (name, lowest pairs, highest pairs or None).
ACTIVITY_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("light (1-4 targets)", 1, 4),
    ("medium (5-19 targets)", 5, 19),
    ("heavy (20+ targets)", 20, None),
)
# A slice with fewer target pairs than this on either side is reported, never decisive.
GATE_MIN_SLICE_PAIRS = 50
# What a promotion writes for the Vertex Model Registry (locally: instead of uploading).
UPLOAD_REQUEST_FILE = "vertex_upload.json"
# The predictor's serving container contract (Vertex custom containers): these environment
# variables name the port and routes; https://cloud.google.com/vertex-ai/docs/predictions/
# custom-container-requirements#aip-variables
AIP_HTTP_PORT = "AIP_HTTP_PORT"
AIP_PREDICT_ROUTE = "AIP_PREDICT_ROUTE"
AIP_HEALTH_ROUTE = "AIP_HEALTH_ROUTE"
AIP_STORAGE_URI = "AIP_STORAGE_URI"
DEFAULT_PREDICT_ROUTE = "/predict"
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PREDICTOR_PORT = 8080
# The gate's verdict is also on the challenger's run (same tags, plus the version it judged),
# so the report shows it from the runs it reads, without asking the registry.
TAG_GATE_VERSION = "gate.version"  # "<registered model name>/<version>"
