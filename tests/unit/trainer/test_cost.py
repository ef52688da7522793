"""trainer/cost: the price table and its overrides, the machine, step records, a run's cost."""

import json
import os

import pytest
import yaml
from mlflow.tracking import MlflowClient

from trainer import contract, cost
from trainer.tracking import RunTracker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
LOCAL_4 = cost.Machine(contract.MACHINE_LOCAL, 4.0)


def _record(step, seconds, machine, execution="e1"):
    return cost.StepRecord(step, seconds, machine, execution)


# --- the price table -------------------------------------------------------------------


def test_the_packaged_table_prices_every_machine_the_example_env_names_and_says_its_date():
    table = cost.load_prices()
    with open(os.path.join(REPO, "configs", "env", "example.yaml")) as f:
        example = yaml.safe_load(f)
    assert example["train"]["machine_type"] in table.machines
    assert example["train"]["accelerator_type"] in table.accelerators
    for name in ("n1-standard-8", "n1-highmem-8", "g2-standard-8", "e2-standard-4"):
        assert table.machines[name] > 0, name
    for name in ("NVIDIA_TESLA_T4", "NVIDIA_L4"):
        assert table.accelerators[name] > 0, name
    assert 0 < table.spot_factor < 1 and table.vcpu_hour > 0
    # A local vCPU costs what one of the default pipeline machine's does.
    assert table.vcpu_hour == pytest.approx(table.machines["e2-standard-4"] / 4, rel=0.01)
    assert table.describe() == f"USD list prices as of {table.as_of}"
    with open(cost.prices.PRICES_FILE) as f:
        text = f.read()
    assert "https://cloud.google.com/vertex-ai/pricing" in text and table.as_of in text


def test_a_machine_is_priced_whole_with_its_accelerators_and_spot_discount():
    table = cost.load_prices(
        {"machines": {"n1-standard-8": 0.4}, "accelerators": {"NVIDIA_TESLA_T4": 0.3}}
    )
    gpu = cost.Machine("n1-standard-8", 8.0, "NVIDIA_TESLA_T4", 2)
    assert table.hourly(gpu) == (pytest.approx(0.4 + 2 * 0.3), [])
    spot = cost.Machine("n1-standard-8", 8.0, "NVIDIA_TESLA_T4", 2, "SPOT")
    assert table.hourly(spot)[0] == pytest.approx((0.4 + 0.6) * table.spot_factor)
    # Not in the table: per vCPU; an unknown accelerator counts 0 and is named.
    assert table.hourly(LOCAL_4) == (pytest.approx(4 * table.vcpu_hour), [])
    odd = cost.Machine("z9-mega-96", 96.0, "NVIDIA_B300", 1)
    assert table.hourly(odd) == (pytest.approx(96 * table.vcpu_hour), ["NVIDIA_B300"])
    assert table.overridden == ("machines.n1-standard-8", "accelerators.NVIDIA_TESLA_T4")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"machines": {"n1-standard-8": "0.4"}}, "machines.n1-standard-8"),
        ({"machines": {"n1-standard-8": -0.1}}, "machines.n1-standard-8"),
        ({"accelerators": {"T4": 0.4}}, "accelerators.T4"),
        ({"spot_factor": 2}, "spot_factor"),
        ({"vcpu_hour": None, "currency": "EUR"}, "currency"),
    ],
)
def test_a_bad_override_names_its_field(overrides, field):
    with pytest.raises(cost.PriceError) as err:
        cost.load_prices(overrides)
    assert err.value.field == field


# --- the machine ---------------------------------------------------------------------------


def test_a_custom_jobs_machine_comes_from_its_environment():
    environ = {
        contract.ENV_MACHINE_TYPE: "n1-highmem-16",
        contract.ENV_ACCELERATOR_TYPE: "NVIDIA_TESLA_T4",
        contract.ENV_ACCELERATOR_COUNT: "2",
        contract.ENV_SCHEDULING: "SPOT",
    }
    assert cost.detect_machine(environ) == cost.Machine(
        "n1-highmem-16", 16.0, "NVIDIA_TESLA_T4", 2, "SPOT"
    )


def test_elsewhere_the_vcpus_are_the_containers_limit(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cost.cgroup_vcpus(str(tmp_path)) == 1.5
    machine = cost.detect_machine({}, cgroup_root=str(tmp_path))
    assert machine.machine_type == contract.MACHINE_LOCAL
    assert machine.vcpus == min(1.5, os.cpu_count())
    on_vertex = cost.detect_machine({contract.ENV_VERTEX_RUN_LABELS: "{}"}, str(tmp_path))
    assert on_vertex.machine_type == contract.MACHINE_VERTEX_STEP
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cost.cgroup_vcpus(str(tmp_path)) is None
    assert cost.detect_machine({}, str(tmp_path)).vcpus == os.cpu_count()
    # cgroup v1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cost.cgroup_vcpus(str(v1)) == 2.0
    assert cost.cgroup_vcpus(str(tmp_path / "none")) is None


# --- step records and a run's cost -----------------------------------------------------------


def test_a_measured_step_writes_its_record_and_a_failed_one_writes_none(tmp_path):
    with cost.measure("ingest", str(tmp_path / "ok"), environ={}) as timer:
        pass
    (record,) = cost.read_records([str(tmp_path / "ok"), str(tmp_path / "older")])
    assert record == timer.record and record.step == "ingest" and record.seconds >= 0
    with open(tmp_path / "ok" / contract.STEP_RECORD_FILE) as f:
        assert json.load(f)["machine"]["machine_type"] == contract.MACHINE_LOCAL
    with pytest.raises(RuntimeError):
        with cost.measure("transform", str(tmp_path / "failed"), environ={}):
            raise RuntimeError("boom")
    assert not os.path.exists(tmp_path / "failed" / contract.STEP_RECORD_FILE)


def test_a_runs_cost_is_its_own_steps_and_names_each_shared_execution():
    table = cost.load_prices({"vcpu_hour": 1.0, "machines": {"n1-standard-8": 2.0}})
    records = [
        _record("ingest", 3600, LOCAL_4, "ingest-1"),
        _record("transform", 1800, LOCAL_4, "transform-1"),
        _record("train", 1800, cost.Machine("n1-standard-8", 8.0), "train-1"),
        _record("evaluate", 360, LOCAL_4, "evaluate-1"),
    ]
    metrics, tags = cost.run_cost(records, table)
    assert metrics[contract.cost_usd_key("ingest")] == pytest.approx(4.0)
    assert metrics[contract.cost_usd_key("transform")] == pytest.approx(2.0)
    assert metrics[contract.cost_usd_key("train")] == pytest.approx(1.0)
    assert metrics[contract.cost_usd_key("evaluate")] == pytest.approx(0.4)
    assert metrics[contract.COST_USD] == pytest.approx(1.4)  # train + evaluate
    assert metrics[contract.COST_MACHINE_SECONDS] == 2160
    assert metrics[contract.cost_vcpus_key("train")] == 8.0
    assert tags[contract.cost_machine_tag("train")] == "n1-standard-8"
    assert tags[contract.cost_execution_tag("ingest")] == "ingest-1"
    assert contract.cost_accelerator_tag("train") not in tags
    assert tags[contract.TAG_COST_PRICES].endswith("overridden: machines.n1-standard-8, vcpu_hour")
    # A step without a record is named, not silently counted as free.
    _, tags = cost.run_cost(records[1:], table)
    assert tags[contract.TAG_COST_PRICES].endswith("; no record of ingest (not counted)")


def test_the_cost_reaches_a_real_mlflow_run_through_the_tracker(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    metrics, tags = cost.run_cost(
        [_record("train", 60, cost.Machine("g2-standard-8", 8.0, "NVIDIA_L4", 1, "SPOT"))],
        cost.load_prices(),
    )
    tracker = RunTracker(uri, "cost-test", backlog_dir=str(tmp_path))
    tracker.start("r", params={}, tags={})
    tracker.log_metrics(metrics)
    tracker.set_tags(tags)
    tracker.finish(contract.STATUS_FINISHED)
    run = MlflowClient(uri).get_run(tracker.run_id)
    table = cost.load_prices()
    hourly = (table.machines["g2-standard-8"] + table.accelerators["NVIDIA_L4"]) * table.spot_factor
    assert run.data.metrics[contract.COST_USD] == pytest.approx(hourly / 60, rel=1e-4)
    assert run.data.tags[contract.cost_accelerator_tag("train")] == "NVIDIA_L4"
    assert run.data.tags[contract.cost_scheduling_tag("train")] == "SPOT"


# --- billing labels --------------------------------------------------------------------------


def test_the_run_labels_reach_a_dataflow_job_and_do_not_override_the_args():
    environ = {
        contract.ENV_VERTEX_RUN_LABELS: json.dumps(
            {contract.BILLING_LABEL: "8717761889699889152", "team": "vertex-said"}
        )
    }
    args = ["--runner=DataflowRunner", "--labels=team=recs"]
    assert cost.with_run_labels(args, environ) == [
        *args,
        f"--labels={contract.BILLING_LABEL}=8717761889699889152",
    ]
    assert cost.with_run_labels(["--labels", "team=recs"], environ)[-1].startswith(
        f"--labels={contract.BILLING_LABEL}="
    )
    assert cost.with_run_labels(args, {}) == args
    assert cost.run_labels({contract.ENV_VERTEX_RUN_LABELS: "not json"}) == {}


def test_a_later_rungs_record_carries_the_earlier_rungs_seconds(tmp_path, caplog):
    rung1, rung2 = tmp_path / "rung1", tmp_path / "rung2"
    cost.write_record(str(rung1), _record("train", 100, LOCAL_4, "r1"))
    carried = cost.carry_on(_record("train", 40.5, LOCAL_4, "r2"), str(rung1))
    assert carried.seconds == 140.5 and carried.execution == "r2"
    # Without an earlier record (rung 1, or an output from before records): its own seconds.
    assert cost.carry_on(_record("train", 40.5, LOCAL_4, "r2"), "").seconds == 40.5
    with caplog.at_level("WARNING"):
        assert cost.carry_on(_record("train", 7, LOCAL_4, "r3"), str(rung2)).seconds == 7
    assert "the earlier rungs' time is not counted" in caplog.text
    # Another machine: summed, priced as this one, and said.
    caplog.clear()
    other = cost.carry_on(
        _record("train", 10, cost.Machine("n1-standard-8", 8.0), "r4"), str(rung1)
    )
    assert other.seconds == 110 and "all priced as this one" in caplog.text
    # What StepTimer.stop writes into the rung's folder is the carried record.
    timer = cost.StepTimer("train", environ={})
    written = timer.stop(str(rung2), carried_from=str(rung1))
    assert written.seconds >= 100
    assert cost.read_records([str(rung2)]) == [written]


def test_a_gcs_output_folder_is_read_through_the_vertex_mount():
    assert cost.local_folder("gs://bucket/root/model") == "/gcs/bucket/root/model"
    assert cost.local_folder("/local/root/model") == "/local/root/model"
