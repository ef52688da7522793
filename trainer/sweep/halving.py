"""Successive halving in one pipeline run: what each rung stage trains, and who goes on.

KFP v2 has no loops over stages, so the halving pipeline is compiled with a fixed number of
rung stages (``stages``: the intermediate ones, then the final one that trains to
``training.epochs`` and evaluates). A config with fewer rungs leaves the first stages empty:
stage ``s`` trains the config's rung ``s - unused`` (``stage_rungs``), the last rung always
in the final stage, so the unused stages come before rung 1 and every used stage is followed
by the next rung.

Between stages, ``advance`` lists what the next stage trains. After a used stage it reads
the rung's results from MLflow (each trial's run tagged with the rung it reached and its
validation value there, ``contract.halving_rung_value_tag``), keeps the best ones
(``config.rungs``' next count, the best ``1/eta``), tags the others stopped with why (their
runs stay FINISHED), and hands the kept ones on with the model folder they continue from.
Each list item is a sweep training (``grid.plan``'s keys and its transform URI) with the
rung it trains (``RUNG``; 0: a plain training, not halving) and the model folder whose
checkpoint it continues (``RESUME_FROM``; "" for rung 1). MLflow, not the stage's outputs,
carries a rung's results: a stage may be empty, and kfp 2.17's local runner publishes no
outputs for a ParallelFor over an empty list (kfp/local/orchestrator/
enhanced_dag_orchestrator.py, ``_run_parallel_for_task`` returns before ``put_task_output``),
so a ``dsl.Collected`` of it cannot be read.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from trainer import config as cfg
from trainer import contract
from trainer.sweep.grid import FEATURE_CONFIG_ID, MODEL_CONFIG_ID, SEED, job_name, run_key

log = logging.getLogger(__name__)

# Keys a halving item adds to a sweep training item.
RUNG = "rung"
RESUME_FROM = "resume_from"


class RungStagesError(ValueError):
    """A config with more rungs than the pipeline was compiled with stages for."""


def stage_rungs(config: cfg.ExperimentConfig, stages: int) -> list[int]:
    """The config rung each intermediate stage trains (1-based), 0 for an unused stage.

    Args:
        config: The experiment config; its ``rungs`` (none unless strategy halving).
        stages: Rung stages the pipeline was compiled with, the final one included.

    Raises:
        RungStagesError: the config has more rungs than ``stages``.
    """
    rungs = len(config.rungs)
    if rungs > stages:
        raise RungStagesError(
            f"{config.source}: search: strategy halving makes {rungs} rungs "
            f"({', '.join(str(r.epochs) for r in config.rungs)} epochs), more than the "
            f"{stages} rung stages the halving pipeline was compiled with; raise "
            "search.min_epochs or search.eta, or compile with more stages "
            "(python -m pipelines compile --rungs N)"
        )
    used = max(rungs - 1, 0)
    return [0] * (stages - 1 - used) + list(range(1, used + 1))


def _item(training: dict, rung: int, resume_from: str = "") -> dict:
    return {**training, RUNG: rung, RESUME_FROM: resume_from}


@dataclasses.dataclass(frozen=True)
class RungResult:
    """One trial's run after a rung: its value there, and where its model folder is."""

    run_id: str
    run_key: str
    value: float
    model_uri: str
    training: dict  # the sweep training item (ids, seed, transform URI)


def advance(
    config: cfg.ExperimentConfig,
    trainings: list[dict],
    stage: int,
    stages: int,
    tracking_uri: str,
    pipeline_job: str,
    prices: dict | None = None,
) -> list[dict]:
    """What stage ``stage + 1`` trains (stage ``stages`` is the final one).

    Args:
        config: The experiment config.
        trainings: Every training of the sweep with its transform URI (``bind_transforms``).
        stage: The stage just done (0: none yet).
        stages: Rung stages compiled, the final one included.
        tracking_uri: The MLflow store the trials' runs are in.
        pipeline_job: This pipeline job (its runs are the trials').
        prices: Overrides of the packaged price table, for the stopped trials' cost.

    Returns:
        The items of the next stage: all trainings for rung 1 (or for the final stage when
        the config has one rung or is not halving), the kept ones after a used stage, or
        nothing when the next stage is unused.
    """
    plan = stage_rungs(config, stages)
    rungs = len(config.rungs)
    done = plan[stage - 1] if 1 <= stage <= len(plan) else 0
    final = stage >= len(plan)  # the next stage is the final one: it always trains
    following = rungs if final else plan[stage]
    if not done:
        return [_item(t, following) for t in trainings] if final or following else []
    kept = select(config, trainings, done, tracking_uri, pipeline_job, prices)
    return [_item(r.training, following, r.model_uri) for r in kept]


def select(
    config: cfg.ExperimentConfig,
    trainings: list[dict],
    rung: int,
    tracking_uri: str,
    pipeline_job: str,
    prices: dict | None = None,
) -> list[RungResult]:
    """Keeps the best of a rung's trials (by their value there) and tags each one's run.

    The next rung's count comes from ``config.rungs`` (the best ``1/eta``, at least one);
    fewer when trials failed. Ties go to the earlier trial of the plan. A trial with no
    finished run at this rung (its training failed, or MLflow did not get its tags) is said
    so in the log and goes no further. A stopped trial's run also gets its cost (the train
    records of its rungs, ``trainer.cost``): it is never evaluated, where the others get theirs.

    Returns:
        The kept trials, best first.
    """
    results = rung_results(config, trainings, rung, tracking_uri, pipeline_job)
    wanted = config.rungs[rung].runs
    order = {run_key(config, pipeline_job, *_ids(t)): i for i, t in enumerate(trainings)}
    results.sort(key=lambda r: (-_rank_value(r.value), order[r.run_key]))
    kept, stopped = results[:wanted], results[wanted:]
    missing = config.rungs[rung - 1].runs - len(results)
    if missing > 0:
        log.error(
            "rung %d: %d trial(s) have no finished run with the rung's tags (failed, or "
            "their tracking is behind): they go no further",
            rung,
            missing,
        )
    tags = {}
    for i, result in enumerate(kept, 1):
        tags[result.run_id] = {
            contract.TAG_HALVING_STATUS: contract.HALVING_CONTINUED,
            contract.TAG_HALVING_REASON: (
                f"rung {rung} of {len(config.rungs)}: {contract.SELECTION_METRIC} "
                f"{result.value:.4f}, {_ordinal(i)} of {len(results)}; the best "
                f"{len(kept)} go on to rung {rung + 1}"
            ),
        }
    for result in stopped:
        tags[result.run_id] = {
            contract.TAG_HALVING_STATUS: contract.HALVING_STOPPED,
            contract.TAG_HALVING_REASON: _stop_reason(result, kept, len(results), rung, config),
        }
    _log_verdicts(tracking_uri, tags, _stopped_cost(stopped, prices))
    for result in stopped:
        log.info("stopped %s: %s", result.run_key, tags[result.run_id][contract.TAG_HALVING_REASON])
    return kept


def rung_results(
    config: cfg.ExperimentConfig,
    trainings: list[dict],
    rung: int,
    tracking_uri: str,
    pipeline_job: str,
) -> list[RungResult]:
    """The finished runs of this job's trials tagged with ``rung``, with their value there."""
    from trainer.tracking import open_client

    by_key = {run_key(config, pipeline_job, *_ids(t)): t for t in trainings}
    client = open_client(tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is None:
        return []
    job = job_name(pipeline_job)
    runs = _search_all(
        client,
        experiment.experiment_id,
        f"tags.`{contract.TAG_PIPELINE_JOB}` = '{job}' "
        f"and tags.`{contract.TAG_HALVING_RUNG}` = '{rung}' "
        f"and attributes.status = '{contract.STATUS_FINISHED}'",
    )
    out = []
    for run in runs:
        tags = run.data.tags
        key = tags.get(contract.TAG_RUN_KEY, "")
        if key not in by_key:
            continue
        out.append(
            RungResult(
                run_id=run.info.run_id,
                run_key=key,
                value=_parse(tags.get(contract.halving_rung_value_tag(rung), "nan")),
                model_uri=tags.get(contract.TAG_MODEL_URI, ""),
                training=by_key[key],
            )
        )
    return out


def _stop_reason(result: RungResult, kept: list, judged: int, rung: int, config) -> str:
    last = kept[-1].value
    where = f"rung {rung} of {len(config.rungs)}: {contract.SELECTION_METRIC} {result.value:.4f}"
    # A tie with the last one kept goes to the earlier trial of the plan.
    how = "tied with" if result.value == last else "below"
    earlier = ", the earlier trial kept" if result.value == last else ""
    return (
        f"{where} {how} the {_ordinal(len(kept))} best {last:.4f}{earlier} "
        f"(the best {len(kept)} of {judged} go on)"
    )


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _stopped_cost(
    stopped: list[RungResult], prices: dict | None
) -> dict[str, tuple[dict[str, float], dict[str, str]]]:
    """Each stopped trial's cost metrics and tags from the train record in its model folder."""
    from trainer import cost

    table = cost.load_prices(prices)
    out = {}
    for result in stopped:
        folder = cost.local_folder(result.model_uri)
        records = cost.read_records([folder]) if folder else []
        if records:
            out[result.run_id] = cost.run_cost(records, table)
    return out


def _log_verdicts(
    tracking_uri: str,
    tags: dict[str, dict[str, str]],
    costs: dict[str, tuple[dict[str, float], dict[str, str]]] | None = None,
) -> None:
    """Each judged run's verdict tags, and a stopped run's cost, in one request per run."""
    import time

    from mlflow.entities import Metric, RunTag

    from trainer.tracking import open_client

    client = open_client(tracking_uri)
    now = int(time.time() * 1000)
    for run_id, values in tags.items():
        metrics, cost_tags = (costs or {}).get(run_id, ({}, {}))
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in {**values, **cost_tags}.items()],
        )


def _ids(training: dict) -> tuple[str, str, int]:
    # A KFP list parameter comes back through JSON: the seed may be 1.0 (kfp.local does so).
    return training[FEATURE_CONFIG_ID], training[MODEL_CONFIG_ID], int(training[SEED])


def _parse(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _rank_value(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
