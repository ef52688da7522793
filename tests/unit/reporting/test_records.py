"""The one RunRecord parser, on runs/search-shaped JSON: bad runs are left out, not fatal."""

from __future__ import annotations

import math
import sys

from reporting.records import record_from_json, records_from_json, records_from_listing


def _run(run_id: str, value: object = 0.5) -> dict:
    return {
        "info": {"run_id": run_id, "run_name": run_id, "status": "FINISHED", "start_time": 1},
        "data": {"metrics": [{"key": "test_recall_at_100", "value": value, "step": 0}]},
    }


def test_one_malformed_run_is_left_out_and_named():
    skipped: list[str] = []
    runs = [_run("good-1"), _run("bad", "not a number"), {"info": {}}, _run("good-2")]
    records = records_from_json(runs, skipped)
    assert [r.run_id for r in records] == ["good-1", "good-2"]
    assert skipped[0].startswith("bad (ValueError:") and skipped[1].startswith("? (KeyError:")


def test_json_infinities_and_the_stores_stand_in_read_as_infinities():
    for value, expected in (("Infinity", math.inf), ("-Infinity", -math.inf),
                            (sys.float_info.max, math.inf), (-sys.float_info.max, -math.inf)):  # fmt: skip
        assert record_from_json(_run("r", value)).metrics["test_recall_at_100"] == expected
    assert math.isnan(record_from_json(_run("r", "NaN")).metrics["test_recall_at_100"])


def _listing_run(run_id: str, value: object = 0.5, **info: object) -> dict:
    return {
        "info": {
            "run_id": run_id,
            "run_name": run_id,
            "status": "FINISHED",
            "start_time": 1,
            **info,
        },
        "params": {"seed": "42"},
        "tags": {"mlflow.user": "me", "dataset_name": "online_retail"},
        "metrics": [[0, value, 0], [1, 0.1, 4]],
    }


def test_a_listing_page_reads_like_the_same_runs_in_the_search_shape():
    from reporting.listing import decode

    runs = [_listing_run("a"), _listing_run("b", "NaN", run_name="", end_time=5)]
    page = {"format": "run-listing/1", "metric_keys": ["test_recall_at_100", "loss"], "runs": runs}
    direct = records_from_listing(page, [])
    via_json = records_from_json(decode(page)[0], [])
    for a, b in zip(direct, via_json, strict=True):
        assert a.metrics.keys() == b.metrics.keys() and a.metric_steps == b.metric_steps
        assert (a.run_id, a.name, a.end_time, a.params, a.tags) == (
            b.run_id, b.name, b.end_time, b.params, b.tags,
        )  # fmt: skip
    assert direct[0].tags == {"dataset_name": "online_retail"}  # system tags dropped
    assert direct[1].name == "b"[:8] and math.isnan(direct[1].metrics["test_recall_at_100"])
    assert direct[0].metric_steps == {"test_recall_at_100": 0, "loss": 4}


def test_a_malformed_run_of_a_listing_page_is_left_out_and_named():
    bad_index = _listing_run("bad-index")
    bad_index["metrics"] = [[7, 0.5, 0]]  # no such metric name
    page = {
        "metric_keys": ["test_recall_at_100", "loss"],
        "runs": [_listing_run("good-1"), _listing_run("bad", "x"), bad_index, {"info": {}}],
    }
    skipped: list[str] = []
    assert [r.run_id for r in records_from_listing(page, skipped)] == ["good-1"]
    assert [s.split(" ")[0] for s in skipped] == ["bad", "bad-index", "?"]
    assert skipped[0].startswith("bad (ValueError:") and "IndexError" in skipped[1]
