"""Named metric conventions (`ehead eval --convention NAME`) and the `Unavailable` result sentinel.

The default convention, ``paper``, is the definition of EmbodiedHead supplementary B.2 (eqs. 9-15)
and of the mm-listener supplement, sections 6-7. Well-known public codebases compute some metrics
differently, so published tables are only comparable under the same convention. Each variant below
is named after the codebase it reproduces and lists exactly which keyword arguments of which metric
function it changes; everything it does not mention stays at the paper definition.

Variants combine with commas (``codetalker-fdd,dualtalk-sid``); two variants that set the same
argument of the same metric to different values are rejected.

Metric keys used in ``overrides``: ``lve``, ``fdd``, ``mod``, ``ba``, ``sid``, ``l2`` (the
functions in ``ehead_cli.metrics.vertex`` / ``beat`` / ``sid`` / ``listening`` with those names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ehead_cli.errors import ConfigError

DEFAULT_CONVENTION = "paper"


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
    overrides  metric key -> keyword arguments passed to that metric function
    """

    name: str
    reproduces: str
    summary: str
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def kwargs(self, metric: str) -> dict[str, Any]:
        """Keyword arguments for metric ``metric`` under this convention (empty: paper default)."""
        return dict(self.overrides.get(metric, {}))


def _freeze(overrides: dict[str, dict[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in overrides.items()})


# --- the variants -------------------------------------------------------------------------
# CodeTalker main/cal_metric.py (copied verbatim by FaceDiffuser evaluation/compute_objective_metrics.py
# and ProbTalk3D): lip error is the max over lip vertices of the SQUARED distance, no root, in the
# dataset's units (metres for VOCA/FLAME: tables print it x1e-5 or x1e-4); FDD uses the displacement
# from the subject's neutral template, takes the temporal std of its squared norm, and reports the
# signed mean difference gt - pred (a model that moves more than the ground truth scores negative).
_CODETALKER_LVE = {"squared": True, "scale": 1.0}
_CODETALKER_FDD = {"reference": "template", "quantity": "squared_norm", "signed": True, "scale": 1.0}

# DualTalk metric/metric.py: calcuate_sid(pre_exp, gt_exp, 40) passes the prediction as the data
# K-Means is fitted on and the ground truth as the data that is assigned (the reverse of the paper's
# text), with eps 1e-6; K = 40 for expression, 10 for jaw and pose (our defaults already).
# Its "mse" metric is np.mean((pred - gt) ** 2), i.e. MSE where mm-listener / L2L say L2.
_DUALTALK_SID = {"fit_on": "pred", "eps": 1e-6}
_DUALTALK_L2 = {"kind": "mse"}

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
        "root of the CodeTalker number. Not traced to one codebase; offered because tables that "
        "print 'LVE (mm)' next to CodeTalker-style code often report it.",
        {"lve": {"frame_reduce": "rms", "squared": False}},
    ),
    Convention(
        "dualtalk-sid", "Ruthless338/DualTalk metric/metric.py",
        "SID: K-Means fitted on the predicted frames, ground-truth frames assigned; eps 1e-6.",
        {"sid": _DUALTALK_SID},
    ),
    Convention(
        "dualtalk-l2", "Ruthless338/DualTalk metric/metric.py",
        "L2 = mean squared error over frames and dimensions (MSE) instead of the mean per-frame "
        "Euclidean distance.",
        {"l2": _DUALTALK_L2},
    ),
    Convention(
        "dualtalk", "Ruthless338/DualTalk metric/metric.py",
        "dualtalk-sid and dualtalk-l2 together.",
        {"sid": _DUALTALK_SID, "l2": _DUALTALK_L2},
    ),
    Convention(
        "bailando-ba", "lisiyao21/Bailando utils/beat_align_score.py (calc_db, BA)",
        "BA: beats = local minima of the Gaussian-smoothed (sigma 5 frames) head speed, one-sided "
        "score over ground-truth beats, Gaussian sigma 3 frames.",
        {"ba": _BAILANDO_BA},
    ),
)

CONVENTIONS: Mapping[str, Convention] = MappingProxyType(
    {c.name: Convention(c.name, c.reproduces, c.summary, _freeze({k: dict(v) for k, v in c.overrides.items()}))
     for c in _VARIANTS}
)


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
    sources: list[str] = []
    summaries: list[str] = []
    for name in names:
        conv = CONVENTIONS.get(name)
        if conv is None:
            raise ConfigError(f"--convention: unknown convention {name!r}; choose from {', '.join(CONVENTIONS)}")
        for metric, kwargs in conv.overrides.items():
            target = merged.setdefault(metric, {})
            for key, value in kwargs.items():
                if key in target and target[key] != value:
                    raise ConfigError(f"--convention: {name!r} conflicts with an earlier variant on "
                                      f"{metric}.{key} ({target[key]!r} vs {value!r})")
                target[key] = value
        if conv.reproduces:
            sources.append(conv.reproduces)
        summaries.append(conv.summary)
    if len(names) == 1:
        return CONVENTIONS[names[0]]
    return Convention(",".join(names), "; ".join(dict.fromkeys(sources)), " ".join(summaries), _freeze(merged))
