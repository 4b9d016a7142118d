"""Named metric conventions (`ehead eval --convention NAME`) and the `Unavailable` result sentinel.

The default convention, ``paper``, is the definition of EmbodiedHead supplementary B.2 (eqs. 9-15)
and of the mm-listener supplement, sections 6-7. Well-known public codebases compute some metrics
differently, so published tables are only comparable under the same convention. Each variant below
is named after the codebase it reproduces (``reproduces`` names the repository and file) and lists
exactly what it changes; everything it does not mention stays at the paper definition. It changes
two things:

- ``overrides``: keyword arguments of a metric function (the functions of ``ehead_cli.metrics.vertex``
  / ``beat`` / ``sid`` / ``listening``; metric names ``lve``, ``fdd``, ``mod``, ``ba``, ``sid``, ``l2``,
  ``fd``, ``pfd``, ``variation``, ``diversity``);
- ``protocol``: how ``ehead eval`` applies a metric, per metric name: ``level`` (how per-clip values
  become the overall value: ``frame``-weighted mean, plain mean over ``clip``s, or ``pooled``
  frames), ``splits`` (the frame splits it is reported on) and ``spaces`` (the coefficient spaces of
  the listening-family metrics, ``metrics.listening.SPACE_SETS``).

Variants combine with commas (``codetalker-fdd,dualtalk-sid``); two variants that set the same
argument or protocol field of the same metric to different values are rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ehead_cli.errors import ConfigError

DEFAULT_CONVENTION = "paper"
DEFAULT_SPACES = "paper"  # listening-family spaces: 100 expression coefficients, pose = head rotation + jaw
PROTOCOL_FIELDS = ("level", "splits", "spaces")
LEVELS = ("frame", "video", "clip", "pooled")
FRAME_SPLITS = ("all", "speaking", "listening")  # frames split by the ground-truth states; "all" is both


@dataclass(frozen=True)
class Unavailable:
    """A metric that could not be computed, with the reason (and how to enable it) in one line.

    Returned instead of a number, never dropped: reports print ``unavailable (<reason>)``.
    """

    reason: str

    def __str__(self) -> str:
        return f"unavailable ({self.reason})"


@dataclass(frozen=True)
class Convention:
    """One named way of computing the metrics.

    name       the ``--convention`` value
    reproduces the codebase and file it matches (empty for the paper default)
    summary    what differs from the paper definition, in words
    overrides  metric name -> keyword arguments passed to that metric function
    protocol   metric name -> {"level": ..., "splits": (...), "spaces": ...} (module docstring)
    """

    name: str
    reproduces: str
    summary: str
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    protocol: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def kwargs(self, metric: str) -> dict[str, Any]:
        """Keyword arguments for metric ``metric`` under this convention (empty: paper default)."""
        return dict(self.overrides.get(metric, {}))

    def level(self, metric: str, default: str) -> str:
        """How ``metric``'s per-clip values become the overall value (``default``: the registry's)."""
        return self.protocol.get(metric, {}).get("level", default)

    def splits(self, metric: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """The frame splits ``metric`` is reported on (``default``: the registry's)."""
        return tuple(self.protocol.get(metric, {}).get("splits", default))

    def space_set(self, metric: str) -> str:
        """The coefficient spaces of a listening-family metric (``metrics.listening.SPACE_SETS``)."""
        return self.protocol.get(metric, {}).get("spaces", DEFAULT_SPACES)


def _freeze(entries: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    """Per-metric entries -> read-only mappings (a protocol's ``splits`` as a tuple)."""
    return MappingProxyType({metric: MappingProxyType({k: tuple(v) if k == "splits" else v for k, v in fields.items()})
                             for metric, fields in entries.items()})


def _check_protocol(conv: Convention) -> Convention:
    """A variant's protocol names known fields, levels and splits (a programming error otherwise)."""
    for metric, fields in conv.protocol.items():
        if set(fields) - set(PROTOCOL_FIELDS) or fields.get("level", LEVELS[0]) not in LEVELS \
                or not set(fields.get("splits", ())) <= set(FRAME_SPLITS):
            raise ValueError(f"convention {conv.name!r}: bad protocol for {metric}: {dict(fields)}")
    return conv


# --- the variants -------------------------------------------------------------------------
# CodeTalker main/cal_metric.py (copied verbatim by FaceDiffuser evaluation/compute_objective_metrics.py
# and ProbTalk3D): lip error is the max over lip vertices of the SQUARED distance, no root, in the
# dataset's units (metres for VOCA/FLAME: tables print it x1e-5 or x1e-4); FDD uses the displacement
# from the subject's neutral template, takes the temporal std of its squared norm, and reports the
# signed mean difference gt - pred (a model that moves more than the ground truth scores negative).
_CODETALKER_LVE = {"squared": True, "scale": 1.0}
_CODETALKER_FDD = {"reference": "template", "quantity": "squared_norm", "signed": True, "scale": 1.0}

# DualTalk metric/metric.py evaluates file by file and prints np.mean of the per-file values:
# every listening-family metric is per clip with a plain mean over clips. calcuate_sid(pre_exp,
# gt_exp, 40) fits K-Means on its first argument, the prediction, and assigns the ground truth (the
# reverse of the paper's text), eps 1e-6; K = 40 for expression, 10 for jaw and head pose (our
# defaults). Its "mse" is np.mean((pred - gt) ** 2) where mm-listener / L2L say L2. Its spaces are
# exp = pre[:, :50] (50 FLAME expression coefficients), jaw = pose[:, 3:], head pose = pose[:, :3].
# calculate_diversity(x, 100) draws two index lists of 100 frames without replacement.
_DUALTALK_SID = {"fit_on": "pred", "eps": 1e-6}
_DUALTALK_L2 = {"kind": "mse"}
_DUALTALK_DIVERSITY = {"n_pairs": 100, "sampling": "without_replacement"}
_PER_CLIP = {"level": "clip"}
_DUALTALK_SET = {"level": "clip", "splits": FRAME_SPLITS, "spaces": "dualtalk"}
_DUALTALK_KMEANS = (
    "DualTalk runs scikit-learn KMeans(n_clusters=K, random_state=0, n_init='auto'): one greedy "
    "k-means++ start (2 + int(ln K) candidates for each new centre, the one that lowers the inertia most "
    "kept) drawn from NumPy's legacy RandomState(0), Lloyd iterations, an emptied cluster re-seeded with "
    "the point farthest from its centre, and a ValueError for a clip with fewer frames than K. ehead's "
    "seeded K-Means (metrics.kmeans) draws one candidate per centre (plain k-means++) from "
    "numpy.random.default_rng(0), keeps an emptied cluster at its last centre and accepts fewer frames "
    "than K (the duplicate centres stay empty). Both stop when the summed squared centre shift is at "
    "most 1e-4 x the mean per-dimension variance (at most 300 iterations). The definition is the same; "
    "the clusters found for a clip, hence SID, can differ slightly."
)

# xg-chu/UniLS core/models/modules/metrics.py calc_val_metrics, the evaluation code of ARTalk's first
# author (xg-chu/ARTalk itself publishes no evaluation script), run by UniLS eval.py with batch size 1
# and np.nanmean over clips. LVE = sqrt(mean_t max_lips ||d||^2) in mm. FDD = 100 x mean_upper
# |std_t(x + y + z)_pred - std_t(x + y + z)_gt|, torch's std (ddof 1) of the coordinate sum in mm.
# Vertices with_headpose=False. UniLS's own lip / upper index lists (which repeat some vertices) are
# not used: ehead keeps the face model's masks.
_ARTALK_LVE = {"frame_reduce": "rms", "squared": False}
_ARTALK_FDD = {"quantity": "summed_xyz", "ddof": 1, "scale": 1e5}  # 1e5 = mm (x 1000) x 100

# Boese0601/Dyadic-Interaction-Modeling (DIM) prints the variance two ways: code/metrics/eval_utils.py
# calculate_variance = np.sum(np.var(x, axis=0)) (sum, not mean, over dimensions), and the test
# scripts (code/test_l2l.py, code/test_s2s.py, code/mymetrics.py print_metrics) np.var(x.reshape(-1))
# of all clips' frames concatenated, flattened over frames and dimensions. DIM's features are
# [pose (6) = EMOCA's global rotation + jaw, 50 expression coefficients].
_DIM_SET = {"level": "pooled", "spaces": "dim"}

# Bailando (Li Siyao et al.) calc_db/BA, reused for head motion by several talking-head repos:
# speed smoothed with a Gaussian of sigma 5 frames, beats = strict local MINIMA of the speed (no
# threshold), score averaged over the reference (ground-truth) beats only, Gaussian sigma 3 frames.
_BAILANDO_BA = {"detector": "bailando_minima", "sigma_frames": 3.0, "symmetric": False}

_VARIANTS: tuple[Convention, ...] = (
    Convention(
        "paper", "",
        "EmbodiedHead supp. B.2 eqs. 9-15 and mm-listener supp. sections 6-7 (the default).",
    ),
    Convention(
        "codetalker-lve", "Doubiiu/CodeTalker main/cal_metric.py",
        "LVE = mean over frames of max over lip vertices of the squared distance (no root), in "
        "the face model's units (no mm scaling).",
        {"lve": _CODETALKER_LVE},
    ),
    Convention(
        "codetalker-fdd", "Doubiiu/CodeTalker main/cal_metric.py",
        "FDD = mean over upper-face vertices of std_t ||v_t - template||^2 (gt) minus the same for "
        "the prediction: template instead of frame 1, squared norms, signed, no mm scaling.",
        {"fdd": _CODETALKER_FDD},
    ),
    Convention(
        "codetalker", "Doubiiu/CodeTalker main/cal_metric.py (also FaceDiffuser, ProbTalk3D)",
        "codetalker-lve and codetalker-fdd together.",
        {"lve": _CODETALKER_LVE, "fdd": _CODETALKER_FDD},
    ),
    Convention(
        "lve-rms", "",
        "LVE = sqrt(mean over frames of max over lip vertices of the squared distance), in mm: the "
        "root of the CodeTalker number, frame-weighted over clips. Per clip it is ARTalk's authors' LVE "
        "(artalk-lve, which also averages clips plainly).",
        {"lve": _ARTALK_LVE},
    ),
    Convention(
        "artalk-lve", "xg-chu/UniLS core/models/modules/metrics.py (calc_val_metrics; run by eval.py)",
        "LVE per clip = sqrt(mean over frames of max over lip vertices of the squared distance) in mm "
        "(lve-rms), the overall value the plain mean over clips. From ARTalk's first author (xg-chu/ARTalk "
        "publishes no evaluation script); the lip vertices are the face model's lips mask, not UniLS's "
        "index list.",
        {"lve": _ARTALK_LVE}, {"lve": _PER_CLIP},
    ),
    Convention(
        "artalk-fdd", "xg-chu/UniLS core/models/modules/metrics.py (calc_val_metrics; run by eval.py)",
        "FDD = 100 x mean over upper-face vertices of |std_t(x+y+z)_pred - std_t(x+y+z)_gt|: the "
        "standard deviation over time (ddof 1) of the sum of a vertex's three coordinates in mm (of its "
        "summed displacement: the reference cancels), so the unit is 0.01 mm and motion with dx+dy+dz = 0 "
        "is not seen; plain mean over clips; the face model's upper_face mask.",
        {"fdd": _ARTALK_FDD},
    ),
    Convention(
        "artalk", "xg-chu/UniLS core/models/modules/metrics.py (calc_val_metrics; run by eval.py)",
        "artalk-lve and artalk-fdd together.",
        {"lve": _ARTALK_LVE, "fdd": _ARTALK_FDD}, {"lve": _PER_CLIP},
    ),
    Convention(
        "dualtalk-sid", "Ruthless338/DualTalk metric/metric.py (calcuate_sid)",
        "SID per clip, K-Means (K 40 exp50, 10 jaw, 10 head rotation) fitted on the clip's predicted "
        "frames and the ground-truth frames assigned, eps 1e-6; the overall value is the plain mean over "
        "clips, not one fit on the pooled frames. " + _DUALTALK_KMEANS,
        {"sid": _DUALTALK_SID}, {"sid": _PER_CLIP},
    ),
    Convention(
        "dualtalk-l2", "Ruthless338/DualTalk metric/metric.py",
        "L2 = mean squared error over frames and dimensions (MSE) instead of the mean per-frame "
        "Euclidean distance; plain mean over clips instead of frame-weighted.",
        {"l2": _DUALTALK_L2}, {"l2": _PER_CLIP},
    ),
    Convention(
        "dualtalk-diversity", "Ruthless338/DualTalk metric/metric.py (calculate_diversity)",
        "Diversity per clip = mean distance of 100 frame pairs whose two index lists are each drawn "
        "without replacement (a frame may pair with itself); a clip needs more than 100 frames. Seeded "
        "here, unseeded in DualTalk.",
        {"diversity": _DUALTALK_DIVERSITY},
    ),
    Convention(
        "dualtalk", "Ruthless338/DualTalk metric/metric.py",
        "DualTalk's protocol for the listening-family metrics and SID: every metric per clip, over all of "
        "its frames (split 'all' is DualTalk's number; speaking and listening are reported too), the "
        "overall value the plain mean over clips (FD, P-FD, SID are not pooled, L2 is not frame-weighted); "
        "DualTalk's spaces, each scored on its own: exp = the first 50 expression coefficients (DualTalk's "
        "FLAME size), jaw = jaw pose, rot = head pose. L2 is MSE (dualtalk-l2), Diversity uses 100 pairs "
        "(dualtalk-diversity), Variation is the mean per-dimension variance (as the paper), SID as "
        "dualtalk-sid. FD has the same formula and eps 1e-6 retry; DualTalk raises on an imaginary residue "
        "above 1e-3 where ehead warns and keeps the real part. " + _DUALTALK_KMEANS,
        {"sid": _DUALTALK_SID, "l2": _DUALTALK_L2, "diversity": _DUALTALK_DIVERSITY},
        {"sid": _PER_CLIP, "l2": _DUALTALK_SET, "fd": _DUALTALK_SET,
         "pfd": _DUALTALK_SET, "variation": _DUALTALK_SET, "diversity": _DUALTALK_SET},
    ),
    Convention(
        "dim-variation-sum", "Boese0601/Dyadic-Interaction-Modeling code/metrics/eval_utils.py "
                             "(calculate_variance)",
        "Variation = the SUM over dimensions of the per-dimension variance over frames, on all clips' "
        "frames pooled, in DIM's spaces: exp = the first 50 expression coefficients, pose = head "
        "rotation + jaw.",
        {"variation": {"form": "sum"}}, {"variation": _DIM_SET},
    ),
    Convention(
        "dim-variation-flat", "Boese0601/Dyadic-Interaction-Modeling code/test_l2l.py, code/mymetrics.py "
                              "(print_metrics: var_pose, var_exp)",
        "Variation = the variance of all values of a space, every clip's frames pooled and flattened over "
        "frames and dimensions (it also counts the spread between the dimensions' means); DIM's spaces "
        "as dim-variation-sum.",
        {"variation": {"form": "flat"}}, {"variation": _DIM_SET},
    ),
    Convention(
        "bailando-ba", "lisiyao21/Bailando utils/beat_align_score.py (calc_db, BA)",
        "BA: beats = local minima of the Gaussian-smoothed (sigma 5 frames) head speed, one-sided "
        "score over ground-truth beats, Gaussian sigma 3 frames.",
        {"ba": _BAILANDO_BA},
    ),
)

CONVENTIONS: Mapping[str, Convention] = MappingProxyType(
    {c.name: _check_protocol(Convention(c.name, c.reproduces, c.summary, _freeze(c.overrides), _freeze(c.protocol)))
     for c in _VARIANTS}
)


def _merge(into: dict[str, dict[str, Any]], entries: Mapping[str, Mapping[str, Any]], name: str) -> None:
    """Fold one variant's per-metric entries into ``into``; ConfigError on a conflicting value."""
    for metric, fields in entries.items():
        target = into.setdefault(metric, {})
        for key, value in fields.items():
            if key in target and target[key] != value:
                raise ConfigError(f"--convention: {name!r} conflicts with an earlier variant on "
                                  f"{metric}.{key} ({target[key]!r} vs {value!r})")
            target[key] = value


def resolve_convention(spec: str | Convention | None) -> Convention:
    """``"paper"``, one variant name, or several joined by commas -> one merged ``Convention``.

    Raises ConfigError (naming ``--convention``) for an unknown name or a conflicting combination.
    """
    if isinstance(spec, Convention):
        return spec
    names = [n.strip() for n in (spec or DEFAULT_CONVENTION).split(",") if n.strip()]
    if not names:
        names = [DEFAULT_CONVENTION]
    merged: dict[str, dict[str, Any]] = {}
    protocol: dict[str, dict[str, Any]] = {}
    sources: list[str] = []
    summaries: list[str] = []
    for name in names:
        conv = CONVENTIONS.get(name)
        if conv is None:
            raise ConfigError(f"--convention: unknown convention {name!r}; choose from {', '.join(CONVENTIONS)}")
        _merge(merged, conv.overrides, name)
        _merge(protocol, conv.protocol, name)
        if conv.reproduces:
            sources.append(conv.reproduces)
        summaries.append(conv.summary)
    if len(names) == 1:
        return CONVENTIONS[names[0]]
    return Convention(",".join(names), "; ".join(dict.fromkeys(sources)), " ".join(summaries), _freeze(merged),
                      _freeze(protocol))
