"""Experiment reporting: read an MLflow experiment, write HTML views, Markdown and KFP metrics.

Plain Python (MLflow client, Jinja2, matplotlib); never imports TensorFlow or kfp.
Entry points: :func:`reporting.build.write_report` and ``python -m reporting``.

Modules, in the order data flows: ``query`` and ``histories`` (read runs and metric histories
through a client from ``trainer.tracking.open_client``), ``records`` (a run as plain data),
``metric`` (metric names: labels, directions, the rank metric), ``aggregate`` (leaderboard,
heatmap, dashboard figures), ``report_model`` (everything the pages show, read once),
``charts`` (SVG), ``pages`` (HTML), ``summary`` (Markdown and KFP metrics), ``build`` (writes
it all) and ``best`` (the leaderboard's first finished run, for the best-model step).
"""
