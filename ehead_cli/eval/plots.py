"""PNG plots of ``ehead eval``: jaw opening over time per clip, and a summary bar chart.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state, no display), and
written atomically. Colours: ground truth black, the prediction blue, baselines in muted tones;
listening frames are shaded grey, speaking frames are left white.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ehead_cli.eval.registry import FRAME_SPLITS
from ehead_cli.io.atomic import atomic_path
from ehead_cli.layout import LISTEN
from ehead_cli.metrics.conventions import Unavailable

if TYPE_CHECKING:
    from ehead_cli.eval.report import EvalReport

DPI = 100
CLIP_FIGSIZE = (11.0, 5.0)  # inches
PANEL_SIZE = (3.2, 2.6)  # inches per summary subplot
SUMMARY_COLUMNS = 4
LISTEN_SHADE = "#d9d9d9"
SOURCE_COLOURS = {"ground truth": "#000000", "prediction": "#1f77b4", "baseline:mean": "#ff7f0e",
                  "baseline:still": "#8c564b", "baseline:shuffled": "#9467bd"}
FALLBACK_COLOUR = "#7f7f7f"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # attach the Agg canvas: PNG without pyplot
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool -> [(start, stop)) index runs where it is True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _colour(source: str) -> str:
    return SOURCE_COLOURS.get(source, FALLBACK_COLOUR)


def jaw_opening_plot(path: str | Path, clip_id: str, openings: Mapping[str, np.ndarray],
                     jaw_degrees: Mapping[str, np.ndarray], states: np.ndarray, fps: float) -> Path:
    """Two panels over time (s): mouth opening d_t (mm, inner lips 62-66, MOD's quantity) and the jaw
    rotation angle (degrees), one line per source; listening frames (ground-truth states) shaded.

    openings, jaw_degrees: source -> (T,); states: (T,) +1 / -1 at ``fps``.
    """
    states = np.asarray(states)
    t = np.arange(states.shape[0]) / fps
    fig = Figure(figsize=CLIP_FIGSIZE)
    axes = fig.subplots(2, 1, sharex=True)
    panels = ((axes[0], openings, "mouth opening [mm]"), (axes[1], jaw_degrees, "jaw angle [deg]"))
    for ax, series, label in panels:
        for start, stop in _runs(states == LISTEN):
            ax.axvspan(start / fps, stop / fps, color=LISTEN_SHADE, linewidth=0)
        for source in sorted(series, key=lambda s: (s != "ground truth", s != "prediction", s)):
            y = np.asarray(series[source])
            ax.plot(t[: y.shape[0]], y, color=_colour(source), label=source,
                    linewidth=1.6 if source in ("ground truth", "prediction") else 0.9,
                    linestyle="-" if source in ("ground truth", "prediction") else "--")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("time [s]")
    handles, _ = axes[0].get_legend_handles_labels()
    handles.append(Patch(color=LISTEN_SHADE, label="listening (ground truth)"))
    # above the plots, so no curve is hidden behind it
    axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.02), fontsize="small",
                   ncol=len(handles), frameon=False)
    fig.suptitle(f"{clip_id}: jaw opening, ground truth vs. prediction")
    fig.tight_layout()
    return _save(fig, Path(path))


def _numeric(value: Any) -> float | None:
    if isinstance(value, Unavailable) or value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def summary_chart(path: str | Path, report: EvalReport) -> Path | None:
    """Small multiples, one subplot per metric column with an overall value: bars per split (x) and
    source (colour). Returns None (and writes nothing) when no metric has a finite value."""

    keys = [k for k in report.keys
            if any(_numeric(report.overall.get(s, {}).get(sp, {}).get(k)) is not None
                   for s in report.sources for sp in FRAME_SPLITS)]
    if not keys:
        return None
    cols = min(SUMMARY_COLUMNS, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
    width = 0.8 / len(report.sources)
    key_spec = report.key_specs
    for ax, key in zip(axes, keys, strict=False):
        splits = [sp for sp in FRAME_SPLITS if sp in key_spec[key].splits]
        for j, source in enumerate(report.sources):
            vals = [_numeric(report.overall.get(source, {}).get(sp, {}).get(key)) for sp in splits]
            x = [i - 0.4 + width * (j + 0.5) for i, v in enumerate(vals) if v is not None]
            if x:
                ax.bar(x, [v for v in vals if v is not None], width, color=_colour(source), label=source)
        ax.set_xticks(range(len(splits)), splits)
        arrow = {"lower": " (lower is better)", "higher": " (higher is better)"}.get(key_spec[key].better, "")
        unit = report.units.get(key, "")
        ax.set_title(f"{key}" + (f" [{unit}]" if unit else "") + arrow, fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    handles = [Patch(color=_colour(s), label=s) for s in report.sources]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small")
    fig.suptitle(f"ehead eval: {len(report.clips)} clips, convention {report.convention.name}")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return _save(fig, Path(path))
