"""Experiment reporting: read an MLflow experiment, write HTML views, Markdown and KFP metrics.

Plain Python (MLflow client, Jinja2, matplotlib); never imports TensorFlow or kfp.
Entry points: :func:`reporting.report.render_report` and ``python -m reporting``.
"""
