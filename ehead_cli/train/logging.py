"""What a run reports while it trains: ``metrics.csv`` (one row per ``log_every`` steps), TensorBoard
events when tensorboard is installed, the rich progress bar, and ``loss.png`` drawn at the end."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ehead_cli.io.atomic import atomic_path

METRICS = "metrics.csv"
LOSS_PNG = "loss.png"
TRAILING_COLUMNS = ("grad_norm", "lr", "it_s", "val_loss")


class MetricsLog:
    """``RUN_DIR/metrics.csv``: step, the task's loss terms, grad norm, lr, it/s, validation loss, then
    ``extra`` columns (a selection term's validation value, the schedule's phase)."""

    def __init__(self, out: Path, loss_keys: Sequence[str], extra: Sequence[str] = ()):
        self.path = out / METRICS
        self.columns = ("step", *loss_keys, *TRAILING_COLUMNS, *extra)

    def write_header(self) -> None:
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerow(self.columns)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(["" if row.get(c) is None else
                                    (row[c] if c == "step" else f"{row[c]:.6g}") for c in self.columns])


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    with open(Path(run_dir) / METRICS) as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def plot_losses(out: Path, keys: Sequence[str], ylabel: str, val_label: str = "val loss (EMA)") -> None:
    """loss.png: the training loss terms ``keys`` (the total first) and the validation loss against the
    step (and a task's validation selection term, ``val_<term>``, when metrics.csv has one)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(out)
    if not rows:
        return
    fig = Figure(figsize=(8, 4.5), dpi=100)  # the object API on the Agg canvas, as ehead eval's plots
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    steps = [r["step"] for r in rows]
    for key in keys:
        ax.plot(steps, [r.get(key, math.nan) for r in rows], label=key, lw=1.5 if key == keys[0] else 0.8)
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label=val_label, color="black", ms=3)
    for key in sorted({k for r in rows for k in r if k.startswith("val_") and k != "val_loss"}):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts, strict=True), "s--", label=key.replace("_", " ", 1), color="dimgray", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / LOSS_PNG) as tmp:
        fig.savefig(tmp, format="png")


def tensorboard(out: Path):
    """A SummaryWriter under RUN_DIR/tensorboard, or None when tensorboard is absent or broken."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    try:
        return SummaryWriter(str(out / "tensorboard"))
    except Exception:  # tensorboard present but broken: metrics.csv still has everything
        return None


def progress_bar(enabled: bool, console, label: str = "train"):
    """A rich progress bar showing loss, lr, it/s and the time left, or None."""
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.2f} it/s" if task.speed else "-- it/s")

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"), Speed(),
                    TimeRemainingColumn(), console=console, transient=False)
