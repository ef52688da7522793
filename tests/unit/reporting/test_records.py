"""The one RunRecord parser, on runs/search-shaped JSON: bad runs are left out, not fatal."""

from __future__ import annotations

import math
import sys

from reporting.records import record_from_json, records_from_json


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
