"""``ehead eval``: predicted vs. ground-truth motion (and video), per clip and overall.

``registry`` (the metrics, their units and groups), ``pairing`` (files by clip id, length alignment),
``images`` (the video-frame loop), ``compute`` (per-clip values), ``aggregate`` (overall values),
``report`` (the report and its JSON form), ``write`` (the report folder), ``plots`` (its PNGs),
``console`` (the tables), ``pipeline`` (``evaluate``, which runs them in order). The metrics
themselves are pure functions in ``ehead_cli.metrics``.
"""

from ehead_cli.eval.console import print_report
from ehead_cli.eval.pipeline import evaluate
from ehead_cli.eval.registry import metric_units, parse_baselines, parse_metrics
from ehead_cli.eval.report import EvalReport

__all__ = ["EvalReport", "evaluate", "metric_units", "parse_baselines", "parse_metrics", "print_report"]
