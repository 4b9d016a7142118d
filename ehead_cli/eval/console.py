"""The console view of a report: rich tables of the overall values, per clip, unavailable metrics
and problems.
"""

from __future__ import annotations

import math
from typing import Any

from ehead_cli.eval.registry import FRAME_SPLITS, PREDICTION, MetricSpec, Value
from ehead_cli.eval.report import EvalReport
from ehead_cli.eval.write import PER_CLIP_CSV
from ehead_cli.metrics.conventions import Unavailable

PRINT_CLIPS = 40  # per-clip rows ``print_report`` shows before pointing at the CSV


def format_value(value: Value | None) -> str:
    """A table cell: 4 significant digits, ``n/a`` for Unavailable, ``-`` for not computed."""
    if value is None:
        return "-"
    if isinstance(value, Unavailable):
        return "n/a"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _heading(key: str, spec: MetricSpec) -> str:
    """The metric key with ↓ (lower is better) or ↑ (higher is better)."""
    return key + {"lower": " ↓", "higher": " ↑"}.get(spec.better, "")


def unpaired_lines(report: EvalReport, shown: int = 5) -> list[str]:
    """One line per kind of unpaired clip (not evaluated, not a failure), naming the first few."""
    out = []
    for kind, ids in report.unpaired.items():
        if ids:
            names = ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
            side = "ground-truth clip(s) have no prediction" if kind == "no prediction" else \
                "prediction(s) have no ground truth"
            out.append(f"not evaluated: {len(ids)} {side} ({names})")
    return out


def print_report(report: EvalReport, console: Any, *, max_clips: int = PRINT_CLIPS, err_console: Any = None) -> None:
    """Rich tables: overall per split (metric x source), per clip (first ``max_clips``; columns with a
    value), the unavailable metrics with their reasons; the unpaired clips and the problems go to
    ``err_console`` (default: ``console``)."""
    from rich.table import Table as RichTable

    err_console = err_console or console
    conv, spec = report.convention, report.key_specs
    console.print(f"convention: {conv.name}" + (f" ({conv.reproduces})" if conv.reproduces else "")
                  + f"; face model: {report.face}; clips: {len(report.clips)} evaluated, "
                  f"{len(report.problems)} problem(s); frames: {report.frames['all']} "
                  f"({report.frames['speaking']} speaking, {report.frames['listening']} listening)")
    for split in FRAME_SPLITS:
        sources = [src for src in report.sources if split in report.overall.get(src, {})]
        rows = [k for k in report.keys if split in spec[k].splits]
        if not sources or not rows:
            continue
        n_clips = sum(1 for c in report.clips if c.frames.get(split))
        table = RichTable(title=f"overall, {split} frames ({report.frames[split]} frames, {n_clips} clips)")
        table.add_column("metric")
        table.add_column("unit")
        for source in sources:
            table.add_column(source, justify="right")
        for key in rows:
            table.add_row(_heading(key, spec[key]), report.units.get(key, ""),
                          *[format_value(report.overall[src][split].get(key)) for src in sources])
        console.print(table)

    keys = [k for k in report.keys if spec[k].level != "pooled"
            and any(isinstance(c.values.get(PREDICTION, {}).get(spec[k].splits[0], {}).get(k), float)
                    for c in report.clips)]
    if report.clips and keys:
        table = RichTable(title=f"per clip ({PREDICTION}; speaking/listening values are in {PER_CLIP_CSV})")
        table.add_column("clip")
        table.add_column("frames", justify="right")
        table.add_column("speak/listen", justify="right")
        for key in keys:
            table.add_column(_heading(key, spec[key]) + ("" if "all" in spec[key].splits else "\n(listening)"),
                             justify="right")
        for c in report.clips[:max_clips]:
            cells = [format_value(c.values.get(PREDICTION, {}).get(spec[k].splits[0], {}).get(k)) for k in keys]
            table.add_row(c.clip_id, str(c.n_frames), f"{c.frames['speaking']}/{c.frames['listening']}", *cells)
        console.print(table)
        if len(report.clips) > max_clips:
            console.print(f"... {len(report.clips) - max_clips} more clips in {PER_CLIP_CSV}")

    unavailable = report.unavailable()
    if unavailable:
        table = RichTable(title="unavailable metrics")
        table.add_column("metric")
        table.add_column("reason")
        for key, reason in unavailable.items():
            table.add_row(key, reason)
        console.print(table)
    for kind, path in report.files.items():
        console.print(f"{kind}: {path}")
    for line in unpaired_lines(report):
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if report.problems:
        table = RichTable(title="problems (exit status 1)")
        for col in ("clip", "kind", "message"):
            table.add_column(col, overflow="fold")
        for p in report.problems:
            table.add_row(p.clip_id, p.kind, p.message)
        err_console.print(table)
    if not report.clips:
        err_console.print("no clip could be evaluated" + ("" if report.files else "; no report was written"),
                          markup=False, highlight=False)
