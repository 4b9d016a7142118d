"""The report of ``ehead eval``: clip problems, per-clip results, the whole report and its JSON form
and per-clip table, and the rules written into every ``report.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ehead_cli.eval.images import IMAGE_CROP
from ehead_cli.eval.registry import PREDICTION, MetricSpec, Table, key_specs, metric_specs
from ehead_cli.layout import LENGTH_TOLERANCE_S
from ehead_cli.metrics.conventions import Convention, Unavailable

RULES = {
    "pairing": "pred/<id>.npz with gt/<id>.npz (or a dataset folder's clips/<id>.npz from manifest.csv, "
               "optionally one split); clips on one side only are listed as unpaired and not evaluated; "
               "unreadable and unalignable clips are listed as problems",
    "alignment": f"same fps required; lengths differing by at most {LENGTH_TOLERANCE_S} s are cut to the "
                 "shorter, larger differences are errors",
    "identity": "vertices of prediction and ground truth both use the ground truth's shape (metrics measure "
                "motion, not identity)",
    "head_pose": "LVE, FDD, MOD use vertices with the global head rotation and translation removed",
    "splits": "frames split by the ground-truth states: speaking (+1), listening (-1); listening-family "
              "metrics on listening frames only unless the convention's protocol names other splits "
              "(definitions[name].splits)",
    "aggregation": "frame-level metrics: frame-weighted mean over clips; clip-level metrics: mean over clips; "
                   "pooled metrics: computed once on all clips' frames pooled; each metric's level is "
                   "definitions[name].level, which the convention's protocol may change",
    "images": f"<id>.mp4 pairs, PyAV frame by frame, centre crop {IMAGE_CROP}x{IMAGE_CROP} (smaller sides kept), "
              "RGB in [0, 1], frames aligned with the motion",
    "baselines": "metrics.baseline_motion predictions from the same aligned ground truth (no video)",
}


@dataclass(frozen=True)
class ClipProblem:
    """A clip (or file) that could not be (fully) evaluated. ``kind``: missing prediction, no ground
    truth, missing ground truth, unreadable, length mismatch, failed, bad video, video length mismatch."""

    clip_id: str
    kind: str
    message: str


@dataclass
class ClipResult:
    """One evaluated clip.

    n_frames       motion frames evaluated (after alignment); pred_frames / gt_frames: file lengths
    frames         split -> motion frames in it; video_frames: split -> video frames (empty: no video)
    values         source -> split -> metric key -> value (``PREDICTION``, ``baseline:<kind>``,
                   ``GROUND_TRUTH`` for descriptive metrics)
    """

    clip_id: str
    n_frames: int
    pred_frames: int
    gt_frames: int
    frames: dict[str, int]
    video_frames: dict[str, int] = field(default_factory=dict)
    values: Table = field(default_factory=dict)


@dataclass
class EvalReport:
    """Everything ``evaluate`` found; ``to_dict`` is the JSON report, ``print_report`` the table view.

    overall: source -> split -> key -> value (see the module docstring for the aggregation);
    coverage: source -> split -> key -> number of clips that contributed.
    """

    pred_dir: str
    gt_dir: str
    split: str | None
    convention: Convention
    metrics: tuple[str, ...]
    sources: tuple[str, ...]
    face: str
    clips: list[ClipResult]
    problems: list[ClipProblem]
    overall: Table
    coverage: dict[str, dict[str, dict[str, int]]]
    frames: dict[str, int]
    units: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    unpaired: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "no prediction" / "no ground truth" -> ids

    @property
    def specs(self) -> dict[str, MetricSpec]:
        """Every metric's spec under the report's convention (its level, splits and columns)."""
        return metric_specs(self.convention)

    @property
    def key_specs(self) -> dict[str, MetricSpec]:
        """Report column -> its metric's spec under the report's convention."""
        return key_specs(self.specs)

    @property
    def keys(self) -> tuple[str, ...]:
        """The report columns of the selected metrics, in registry order."""
        specs = self.specs
        return tuple(k for name in self.metrics for k in specs[name].keys)

    @property
    def failed(self) -> bool:
        """True when any clip or file could not be evaluated, or nothing was."""
        return bool(self.problems) or not self.clips

    @property
    def exit_code(self) -> int:
        """Status for the command line: 0 when every clip was evaluated, else 1."""
        return 1 if self.failed else 0

    def unavailable(self) -> dict[str, str]:
        """Metric key -> reason, for every selected key the prediction has no overall value for."""
        out: dict[str, str] = {}
        key_spec = self.key_specs
        for split, values in self.overall.get(PREDICTION, {}).items():
            for key, value in values.items():
                if isinstance(value, Unavailable) and key not in out:
                    first = key_spec[key].splits[0]
                    out[key] = value.reason if split == first else f"{value.reason} ({split} frames)"
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: settings, rules, units, definitions, problems, overall and per-clip values."""
        conv, specs = self.convention, self.specs
        return {
            "pred_dir": self.pred_dir, "gt_dir": self.gt_dir, "split": self.split,
            "unpaired": {k: list(v) for k, v in self.unpaired.items()},
            "convention": {"name": conv.name, "reproduces": conv.reproduces, "summary": conv.summary,
                           "overrides": {m: dict(kw) for m, kw in conv.overrides.items()},
                           "protocol": {m: {k: list(v) if isinstance(v, tuple) else v for k, v in p.items()}
                                        for m, p in conv.protocol.items()}},
            "face_model": self.face,
            "metrics": list(self.metrics),
            "sources": list(self.sources),
            "rules": dict(RULES),
            "units": {k: self.units[k] for k in self.keys},
            "definitions": {name: {"definition": specs[name].definition, "keys": list(specs[name].keys),
                                   "level": specs[name].level, "splits": list(specs[name].splits),
                                   "better": specs[name].better} for name in self.metrics},
            "frames": self.frames,
            "n_clips": len(self.clips),
            "exit_code": self.exit_code,
            "problems": [{"clip": p.clip_id, "kind": p.kind, "message": p.message} for p in self.problems],
            "overall": jsonable(self.overall),
            "coverage": self.coverage,
            "clips": [{"clip": c.clip_id, "n_frames": c.n_frames, "pred_frames": c.pred_frames,
                       "gt_frames": c.gt_frames, "frames": c.frames, "video_frames": c.video_frames,
                       "values": jsonable(c.values)} for c in self.clips],
            "files": self.files,
        }


def jsonable(x: Any) -> Any:
    """Values -> JSON: Unavailable -> {"unavailable": reason}; +-inf / nan -> "inf" / "-inf" / "nan"."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, Unavailable):
        return {"unavailable": x.reason}
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def column(key: str, split: str) -> str:
    return key if split == "all" else f"{key}_{split}"


def per_clip_frame(report: EvalReport) -> pd.DataFrame:
    """One row per (clip, source) with status, frame counts and every per-clip value (``<key>`` for
    all frames, ``<key>_speaking`` / ``<key>_listening``); failed clips get a row with their message."""
    rows = []
    key_spec = report.key_specs
    keys = [k for k in report.keys if key_spec[k].level != "pooled"]
    for c in report.clips:
        for source in report.sources:
            if source not in c.values:
                continue
            row: dict[str, Any] = {"clip": c.clip_id, "source": source, "status": "ok", "frames": c.n_frames,
                                   "pred_frames": c.pred_frames, "gt_frames": c.gt_frames,
                                   "speaking_frames": c.frames["speaking"], "listening_frames": c.frames["listening"]}
            for key in keys:
                for split in key_spec[key].splits:
                    v = c.values[source].get(split, {}).get(key)
                    row[column(key, split)] = v if isinstance(v, float) else None
            rows.append(row)
    for p in report.problems:
        rows.append({"clip": p.clip_id, "source": PREDICTION, "status": f"{p.kind}: {p.message}"})
    columns = ["clip", "source", "status", "frames", "pred_frames", "gt_frames", "speaking_frames",
               "listening_frames"] + [column(k, s) for k in keys for s in key_spec[k].splits]
    return pd.DataFrame(rows, columns=columns)
