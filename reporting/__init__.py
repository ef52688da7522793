"""Experiment reporting: read an MLflow experiment, write HTML views, Markdown and KFP metrics.

Plain Python (MLflow client, Jinja2, matplotlib); never imports TensorFlow or kfp.
Entry points: :func:`reporting.build.write_report` and ``python -m reporting``.

Modules, in the order data flows: ``query`` (the MLflow adapter: runs and histories),
``metric`` (metric names: labels, directions, the rank metric), ``views`` (aggregation),
``model`` (the view model, read once), ``charts`` (SVG), ``pages`` (HTML), ``summary``
(Markdown and KFP metrics) and ``build`` (writes it all).
"""
