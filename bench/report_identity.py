"""Render the golden scenarios with any commit's ``reporting/``, normalised, for a diff.

    python bench/report_identity.py --store /tmp/sweep --code /path/to/old/checkout --out /tmp/a
    python bench/report_identity.py --store /tmp/sweep --code . --out /tmp/b
    diff -r /tmp/a /tmp/b

The sweep store is built once (``--store``, reused when it exists) so both renders read the
very same runs. Each render runs in a subprocess with ``PYTHONPATH`` set to ``--code``; code
from before the report function was renamed is found under its old name, and the combined
page's old file name (``index.html``) is mapped to today's (``report.html``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.unit.reporting import golden  # noqa: E402
from tests.unit.reporting.mlflow_runs import EXPERIMENT, populate_sweep  # noqa: E402

_RENDER = """
import json, sys
try:
    from reporting.build import write_report as render
except ImportError:  # code from before the rename
    from reporting.report import render_report as render
uri, experiment, out, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
result = render(uri, experiment, out, **kwargs)
json.dump({"pages": result.pages, "markdown": result.markdown, "metrics": result.metrics},
          sys.stdout)
"""


def _store(folder: Path) -> tuple[str, dict[str, str]]:
    ids_file = folder / "ids.json"
    uri = f"sqlite:///{folder}/mlflow.db"
    if not ids_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        ids_file.write_text(json.dumps(populate_sweep(uri).ids), encoding="utf-8")
    return uri, json.loads(ids_file.read_text(encoding="utf-8"))


def main() -> None:
    """Build (or reuse) the store, render every scenario, write the normalised files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--code", required=True, type=Path, help="checkout whose code renders")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--hash-blobs",
        action="store_true",
        help="charts, style and script as hashes (the golden files' form)",
    )
    args = parser.parse_args()
    uri, ids = _store(args.store.resolve())
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    scratch = Path(tempfile.mkdtemp(prefix="report-identity-"))
    for scenario in golden.SCENARIOS:
        raw = scratch / scenario
        scenario_uri, kwargs = golden.options(scenario, uri, ids)
        answer = subprocess.run(
            [sys.executable, "-c", _RENDER, scenario_uri, EXPERIMENT, str(raw), json.dumps(kwargs)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(answer.stdout)
        files = golden.files_of(result["pages"], result["markdown"], result["metrics"])
        target = args.out / scenario
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            text = golden.normalise(text, ids, str(args.store.resolve()), args.hash_blobs)
            text = text.replace('href="index.html"', 'href="report.html"')
            (target / name.replace("index.html", "report.html")).write_text(text, encoding="utf-8")
        print(f"{scenario}: {len(files)} files in {target}")


if __name__ == "__main__":
    main()
