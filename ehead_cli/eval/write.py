"""Writing a report folder: report.json, per_clip.csv, summary.png and plots/<id>.png, each atomically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ehead_cli.errors import InputError
from ehead_cli.eval import plots
from ehead_cli.eval.report import EvalReport, per_clip_frame
from ehead_cli.io.atomic import atomic_path

REPORT_JSON = "report.json"


PER_CLIP_CSV = "per_clip.csv"


SUMMARY_PNG = "summary.png"


PLOTS_DIR = "plots"
MAX_CLIP_PLOTS = 24  # jaw-opening plots written per report (the first clips in name order)


def write_reports(report: EvalReport, out_dir: str | Path, plot_data: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> dict[str, str]:
    """Write report.json, per_clip.csv, summary.png and plots/<id>.png into ``out_dir`` (atomically);
    records and returns {kind: path}."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a folder")
    files: dict[str, str] = {}
    with atomic_path(out / PER_CLIP_CSV) as tmp:
        per_clip_frame(report).to_csv(tmp, index=False)
    files["per_clip_csv"] = str(out / PER_CLIP_CSV)
    summary = plots.summary_chart(out / SUMMARY_PNG, report)
    if summary is not None:
        files["summary_png"] = str(summary)
    clip_plots = []
    for clip_id, data in (plot_data or {}).items():
        path = out / PLOTS_DIR / f"{_safe_name(clip_id)}.png"
        plots.jaw_opening_plot(path, clip_id, data["openings"], data["jaw"], data["states"], data["fps"])
        clip_plots.append(str(path))
    if clip_plots:
        files["clip_plots"] = str(out / PLOTS_DIR)
    files["report_json"] = str(out / REPORT_JSON)
    report.files = dict(files)
    with atomic_path(out / REPORT_JSON) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return files


def _safe_name(clip_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", clip_id)
