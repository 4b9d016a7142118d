"""The metrics ``ehead eval`` computes: a ``MetricSpec`` each (report columns, how per-clip values
become the overall value, the frame splits, which way is better, the definition), the groups of
``--metrics``, the baselines of ``--baseline``, and the unit of every report column.

``METRICS`` holds the paper's protocol; ``metric_specs(convention)`` applies a convention's
protocol (``metrics.conventions``: level, splits, coefficient spaces), and every consumer of the
specs (per-clip values, aggregation, report, console, plots) reads those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ehead_cli.errors import ConfigError
from ehead_cli.metrics import vertex as vertex_metrics
from ehead_cli.metrics.baselines import BASELINES
from ehead_cli.metrics.conventions import FRAME_SPLITS, Convention, Unavailable, resolve_convention
from ehead_cli.metrics.listening import DEFAULT_SPACES, SPACE_SET_TEXT, SPACE_SETS, SPACE_UNITS

LISTENING_ONLY = ("listening",)


PREDICTION = "prediction"


GROUND_TRUTH = "ground truth"


BASELINE_PREFIX = "baseline:"


MIN_DISTRIBUTION_FRAMES = 2  # Variation, Diversity, FD need at least two frames


Value = float | Unavailable


Table = dict[str, dict[str, dict[str, Value]]]  # source -> split -> metric key -> value


@dataclass(frozen=True)
class MetricSpec:
    """One selectable metric (``--metrics NAME``) and the report columns it fills.

    keys     report columns (``sid`` also gives its three components, listening metrics one per space)
    level    frame | video | clip | pooled: how per-clip values become the overall value (module docstring)
    splits   the frame splits it is computed on
    better   "lower", "higher", or "" (describes the prediction; compare with the ground truth's value)
    """

    name: str
    keys: tuple[str, ...]
    level: str
    splits: tuple[str, ...]
    better: str
    definition: str


# metrics with one report column per coefficient space, <name>_<space> (metrics.listening.SPACE_SETS)
SPACE_METRICS = ("l2", "fd", "variation", "diversity", "pfd")


def _spaces(name: str, space_set: str = DEFAULT_SPACES) -> tuple[str, ...]:
    return tuple(f"{name}_{space}" for space in SPACE_SETS[space_set])


METRICS: Mapping[str, MetricSpec] = {s.name: s for s in (
    MetricSpec("lve", ("lve",), "frame", FRAME_SPLITS, "lower",
               "Lip Vertex Error (B.2 eq. 9): mean over frames of the max over lip vertices of the L2 vertex "
               "distance, head pose removed"),
    MetricSpec("fdd", ("fdd",), "clip", FRAME_SPLITS, "lower",
               "Upper-Face Dynamics Deviation (eqs. 10-11): mean over upper-face vertices of |std_pred - std_gt| "
               "of the displacement from frame 1, head pose removed"),
    MetricSpec("mod", ("mod",), "frame", FRAME_SPLITS, "lower",
               "Mouth Opening Difference (eq. 12): mean over frames of |d_pred - d_gt|, d = distance of "
               "landmarks 62 and 66, head pose removed"),
    MetricSpec("ba", ("ba",), "clip", FRAME_SPLITS, "higher",
               "Beat Alignment (eq. 13): symmetric Gaussian (sigma 0.1 s) matching of head angular-speed "
               "peaks above a sliding mean + 0.5 std threshold"),
    MetricSpec("sid", ("sid", "sid_jaw", "sid_exp50", "sid_rot"), "pooled", FRAME_SPLITS, "higher",
               "Speaker Identity Diversity (eqs. 14-15): entropy (bits) of the predicted frames' K-Means cluster "
               "histogram, K-Means fitted on the ground truth; mean of jaw (K 10), exp50 (K 40), rot (K 10)"),
    MetricSpec("l2", _spaces("l2"), "frame", LISTENING_ONLY, "lower",
               "L2 (mm-listener sec. 6): mean over frames of the Euclidean distance to the ground-truth "
               "coefficients; one column per coefficient space, " + SPACE_SET_TEXT[DEFAULT_SPACES]),
    MetricSpec("fd", _spaces("fd"), "pooled", LISTENING_ONLY, "lower",
               "Frechet distance (sec. 6) between Gaussian fits of predicted and ground-truth frames"),
    MetricSpec("variation", _spaces("variation"), "clip", LISTENING_ONLY, "",
               "Variation (sec. 6): variance over frames, mean over dimensions"),
    MetricSpec("diversity", _spaces("diversity"), "clip", LISTENING_ONLY, "",
               "Diversity (sec. 6): mean distance of 30 seeded random frame pairs within a clip"),
    MetricSpec("pfd", _spaces("pfd"), "pooled", LISTENING_ONLY, "lower",
               "Paired FD (sec. 6): FD of [listener || speaker] concatenations; needs the speaker's motion"),
    MetricSpec("l2_affect", ("l2_affect",), "clip", LISTENING_ONLY, "lower",
               "L2 Affect (sec. 6): L2 of 1-second-averaged affect, sliding; needs an affect estimator"),
    MetricSpec("jaw", ("jaw_r", "jaw_deg", "jaw_err"), "pooled", FRAME_SPLITS, "",
               "Jaw opening (not a paper metric; ehead's check of lip sync and of a closed listening mouth): "
               "jaw_r = Pearson r of the jaw rotation angle |jaw axis-angle| of prediction vs ground truth over "
               "the pooled frames (higher is better); jaw_deg = mean predicted jaw angle in degrees (compare "
               "with the ground truth's); jaw_err = mean absolute jaw-angle error in degrees (lower is better)"),
    MetricSpec("psnr", ("psnr",), "video", FRAME_SPLITS, "higher", "PSNR (dB) per video frame, averaged"),
    MetricSpec("ssim", ("ssim",), "video", FRAME_SPLITS, "higher",
               "SSIM per video frame (11x11 Gaussian window, sigma 1.5, per RGB channel), averaged"),
    MetricSpec("lpips", ("lpips",), "video", FRAME_SPLITS, "lower", "LPIPS-VGG v0.1 per video frame, averaged"),
)}


METRIC_GROUPS: Mapping[str, tuple[str, ...]] = {
    "motion": ("lve", "fdd", "mod", "ba", "sid", "jaw"),
    "listening": ("l2", "fd", "variation", "diversity", "pfd", "l2_affect"),
    "image": ("psnr", "ssim", "lpips"),
    "all": tuple(METRICS),
}


VERTEX_METRICS = frozenset(vertex_metrics.VERTEX_METRICS)


DESCRIPTIVE = frozenset({"sid", "variation", "diversity", "jaw"})  # also reported for the ground truth itself


# levels each metric can be computed at (a convention's protocol is checked against them): the
# distribution metrics (eval.frame_sets) work per clip and pooled, the others as written in METRICS
_POOLABLE = frozenset({"sid", "jaw", "l2", "fd", "pfd", "variation", "diversity"})
_PER_CLIP = frozenset({"lve", "fdd", "mod", "ba", "sid", "l2", "fd", "pfd", "variation", "diversity", "l2_affect"})


def _supported(name: str, level: str) -> bool:
    if level == "pooled":
        return name in _POOLABLE
    if level in ("frame", "clip"):
        return name in _PER_CLIP
    return level == METRICS[name].level


def metric_specs(convention: str | Convention | None = None) -> dict[str, MetricSpec]:
    """Every ``MetricSpec`` under ``convention``: its protocol's level and splits, and for the
    space metrics the report columns of its space set (definition extended by the spaces)."""
    conv = resolve_convention(convention)
    out: dict[str, MetricSpec] = {}
    for name, spec in METRICS.items():
        level, splits = conv.level(name, spec.level), conv.splits(name, spec.splits)
        if not _supported(name, level):
            raise ValueError(f"convention {conv.name!r}: {name} cannot be computed at level {level!r}")
        keys, definition = spec.keys, spec.definition
        if name in SPACE_METRICS and conv.space_set(name) != DEFAULT_SPACES:
            keys = _spaces(name, conv.space_set(name))
            definition += f" (spaces under {conv.name}: {SPACE_SET_TEXT[conv.space_set(name)]})"
        out[name] = replace(spec, keys=keys, level=level, splits=splits, definition=definition)
    return out


def key_specs(specs: Mapping[str, MetricSpec]) -> dict[str, MetricSpec]:
    """Report column -> the spec (of ``metric_specs``) it belongs to."""
    return {k: s for s in specs.values() for k in s.keys}


def parse_metrics(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None`` (all), ``"lve,mod"`` or a list of names / groups (motion, listening, image, all) ->
    metric names in registry order. Raises ConfigError naming ``--metrics`` for an unknown name."""
    if spec is None:
        return tuple(METRICS)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for raw in names:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        if name in METRIC_GROUPS:
            chosen.update(METRIC_GROUPS[name])
        elif name in METRICS:
            chosen.add(name)
        else:
            raise ConfigError(f"--metrics: unknown metric {raw.strip()!r}; choose from "
                              f"{', '.join([*METRICS, *METRIC_GROUPS])}")
    if not chosen:
        raise ConfigError("--metrics: the list is empty")
    return tuple(n for n in METRICS if n in chosen)


def parse_baselines(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """None, ``"mean"``, ``"mean,still"`` or a list -> baseline kinds; ConfigError names ``--baseline``."""
    if spec is None:
        return ()
    kinds = [k.strip() for k in (spec.split(",") if isinstance(spec, str) else spec) if k.strip()]
    for kind in kinds:
        if kind not in BASELINES:
            raise ConfigError(f"--baseline: unknown baseline {kind!r}; choose from "
                              f"{', '.join(BASELINES)}")
    return tuple(dict.fromkeys(kinds))


def _length_unit(scale: float) -> str:
    """Unit of a length metric scaled by ``scale`` from metres: m, mm, mm x 100 (ARTalk's FDD), m x s."""
    if scale == 1.0:
        return "m"
    per_mm = scale / vertex_metrics.MM_PER_M
    if per_mm == 1.0:
        return "mm"
    return f"mm x {per_mm:g}" if per_mm.is_integer() else f"m x {scale:g}"


def metric_units(convention: str | Convention = "paper") -> dict[str, str]:
    """Unit of every report column under ``convention``, for a face model in metres (FLAME, built-in).

    Expression coefficients are unitless ("coeff"); pose spaces are radians.
    """
    conv = resolve_convention(convention)
    lve, fdd = conv.kwargs("lve"), conv.kwargs("fdd")
    lve_unit = _length_unit(lve.get("scale", vertex_metrics.MM_PER_M))
    if lve.get("squared") and lve.get("frame_reduce", "mean") == "mean":
        lve_unit += "^2"
    fdd_unit = _length_unit(fdd.get("scale", vertex_metrics.MM_PER_M))
    if fdd.get("quantity") == "squared_norm":
        fdd_unit += "^2"
    squared = {"fd", "pfd", "variation"} | ({"l2"} if conv.kwargs("l2").get("kind") == "mse" else set())
    units = {
        "lve": lve_unit, "fdd": fdd_unit, "mod": _length_unit(conv.kwargs("mod").get("scale", vertex_metrics.MM_PER_M)),
        "ba": "", "l2_affect": "affect", "psnr": "dB", "ssim": "", "lpips": "", "jaw_r": "", "jaw_deg": "deg",
        "jaw_err": "deg",
    }
    for name in SPACE_METRICS:
        for space in SPACE_SETS[conv.space_set(name)]:
            units[f"{name}_{space}"] = SPACE_UNITS[space] + ("^2" if name in squared else "")
    units.update({k: "bits" for k in METRICS["sid"].keys})
    return units
