"""The metrics of ``ehead eval``: pure functions on arrays/tensors, one module per family.

- ``vertex``: LVE, FDD, MOD (EmbodiedHead supp. B.2) and the head-pose-free vertex geometry they share;
- ``beat``: BA; ``sid``: SID (with the seeded K-Means of ``kmeans``);
- ``clip``: one clip's LVE, FDD, MOD and BA under a convention;
- ``baselines``: the ``--baseline`` predictions;
- ``image``: PSNR, SSIM, LPIPS-VGG;
- ``listening``: L2, FD, Variation, Diversity, P-FD, L2 Affect (mm-listener supp. section 6);
- ``vq``: VQ-VAE reconstruction, commitment, perplexity (section 7);
- ``conventions``: ``--convention`` variants that reproduce other codebases, and ``Unavailable``.
"""

from ehead_cli.metrics.baselines import BASELINES, baseline_motion
from ehead_cli.metrics.beat import beat_alignment
from ehead_cli.metrics.clip import clip_motion_metrics, geometry_metrics
from ehead_cli.metrics.conventions import CONVENTIONS, Convention, Unavailable, resolve_convention
from ehead_cli.metrics.image import load_lpips, lpips, psnr, ssim
from ehead_cli.metrics.listening import (
    diversity,
    frechet_distance,
    l2_affect,
    l2_distance,
    listening_metrics,
    paired_frechet_distance,
    variation,
)
from ehead_cli.metrics.sid import speaker_identity_diversity
from ehead_cli.metrics.vertex import (
    MetricGeometry,
    face_dynamics_deviation,
    lip_vertex_error,
    metric_geometry,
    motion_to_vertices,
    mouth_opening_difference,
    mouth_openings,
    template_vertices,
)
from ehead_cli.metrics.vq import commitment, perplexity, reconstruction_error

__all__ = [
    "BASELINES", "CONVENTIONS", "Convention", "MetricGeometry", "Unavailable", "baseline_motion", "beat_alignment",
    "clip_motion_metrics", "commitment", "diversity", "face_dynamics_deviation", "frechet_distance",
    "geometry_metrics", "l2_affect", "l2_distance", "lip_vertex_error", "listening_metrics", "load_lpips", "lpips",
    "metric_geometry", "motion_to_vertices", "mouth_opening_difference", "mouth_openings", "paired_frechet_distance",
    "perplexity", "psnr", "reconstruction_error", "resolve_convention", "speaker_identity_diversity", "ssim",
    "template_vertices", "variation",
]
