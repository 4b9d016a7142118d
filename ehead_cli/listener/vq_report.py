"""The VQ-VAE report of a listener checkpoint (mm-listener section 7: Rec., Commit., PPL) on a dyadic
dataset's ground-truth listeners, as a table's rows and as ``vq.json`` (``ehead eval --vq-checkpoint``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# (column title, key of listener.generate.vq_metrics), in the table's order
VQ_COLUMNS = (("Rec. exp (L2)", "rec_exp"), ("Rec. pose (L2)", "rec_pose"), ("Commit. (MSE)", "commit"),
              ("PPL", "perplexity"))


@dataclass(frozen=True)
class VQReport:
    checkpoint: Path
    data: Path
    split: str
    values: dict[str, float]

    @property
    def title(self) -> str:
        return f"VQ-VAE of {self.checkpoint} on the {self.split} listeners of {self.data}"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(title for title, _ in VQ_COLUMNS)

    @property
    def row(self) -> tuple[str, ...]:
        return tuple(f"{self.values[key]:.4g}" for _, key in VQ_COLUMNS)

    def to_json(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "data": str(self.data), "split": self.split, **self.values}


def vq_report(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str = "test",
              device="cpu") -> VQReport:
    """The VQ-VAE metrics of the listener ``checkpoint`` (or run folder) on the ``split`` listeners of ``data``."""
    from ehead_cli.listener.checkpoint import load_listener
    from ehead_cli.listener.generate import vq_metrics

    values = vq_metrics(load_listener(checkpoint, device=device), data, split)
    return VQReport(Path(checkpoint), Path(data), split, values)


def write_vq_json(report: VQReport, out_dir: str | os.PathLike) -> Path:
    """``out_dir/vq.json`` (written atomically); returns its path."""
    from ehead_cli.io.atomic import atomic_path

    path = Path(out_dir) / "vq.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return path
