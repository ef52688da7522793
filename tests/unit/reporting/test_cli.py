"""``python -m reporting``: renders from a store, exits 2 when MLflow is unreachable."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reporting.__main__ import main
from tests.unit.reporting.mlflow_runs import log_lost_runs
from trainer import contract

REPO = Path(__file__).resolve().parents[3]


def test_cli_renders_every_page(sweep_store, tmp_path, capsys):
    ids = sweep_store.ids
    rc = main(
        [
            "--tracking-uri", sweep_store.tracking_uri,
            "--experiment", "reporting-test",
            "--out", str(tmp_path),
            "--rank-metric", "test_recall_at_10",
            "--compare-runs", f"{ids['ids-large']},{ids['hist-small']}",
            "--ui-url", "http://mlflow.local:5000",
        ]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "Ranked by **test\\_recall\\_at\\_10**" in out
    for name in (contract.VIEW_COMBINED, *contract.VIEWS):
        assert (tmp_path / f"{name}.html").is_file()
    assert (tmp_path / contract.SUMMARY_FILE).read_text(encoding="utf-8") in out
    comparison = (tmp_path / "comparison.html").read_text()
    head = comparison[comparison.index('id="compare-metrics"') :]
    head = head[: head.index("</tr>")]
    assert head.index("ids-large") < head.index("hist-small") and "ids-small-s1" not in head
    assert "http://mlflow.local:5000/#/experiments/" in (tmp_path / "leaderboard.html").read_text()


def test_cli_exit_status_when_unreachable(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        "--tracking-uri",
        f"http://127.0.0.1:{port}",
        "--experiment",
        "e",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "MLflow unreachable" in capsys.readouterr().err
    assert main([*args, "--no-fail-on-unreachable"]) == 0
    assert "MLflow was unreachable" in (tmp_path / "report.html").read_text()


def test_reporting_imports_neither_tensorflow_nor_kfp():
    code = (
        "import sys, reporting.build, reporting.__main__\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'kfp', 'keras')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_cli_detail_runs_sets_how_many_runs_get_their_own_chart(sweep_store, tmp_path, capsys):
    def details(n: str) -> tuple[int, str]:
        out = tmp_path / n
        args = ["--tracking-uri", sweep_store.tracking_uri, "--experiment", "reporting-test"]
        assert main([*args, "--out", str(out), "--detail-runs", n]) == 0
        page = (out / "training_curves.html").read_text(encoding="utf-8")
        return page.count('<details class="run"'), page

    one, page = details("1")
    assert one == 1 and 'id="more-history"' in page  # the 5 others are listed below
    every, page = details("0")
    assert every == 6 and 'id="more-history"' not in page  # every run that logged a history
    with pytest.raises(SystemExit) as exc:
        main(["--tracking-uri", "x", "--experiment", "e", "--out", "o", "--detail-runs", "-1"])
    assert exc.value.code == 2 and "--detail-runs" in capsys.readouterr().err


def test_cli_ends_lost_runs_unless_told_to_only_read(tracking_uri, tmp_path, capsys):
    client = MlflowClient(tracking_uri)
    ids = log_lost_runs(client, client.create_experiment("lost"))
    args = ["--tracking-uri", tracking_uri, "--experiment", "lost", "--out", str(tmp_path)]

    def status() -> str:
        return client.get_run(ids["oom-killed"]).info.status

    assert main([*args, "--no-end-lost"]) == 0 and status() == contract.STATUS_RUNNING
    assert "failed (2 lost)" in capsys.readouterr().out
    assert "badge FAILED lost" in (tmp_path / "leaderboard.html").read_text(encoding="utf-8")
    # Silent for years, but not longer than a limit of 10^9 minutes: not lost, not ended.
    assert main([*args, "--lost-after-minutes", "1e9"]) == 0 and status() == contract.STATUS_RUNNING
    assert "0 failed, 3 running" in capsys.readouterr().out
    assert main(args) == 0 and status() == contract.STATUS_FAILED
    with pytest.raises(SystemExit) as exc:
        main([*args, "--lost-after-minutes", "0"])
    assert exc.value.code == 2 and "--lost-after-minutes" in capsys.readouterr().err
