"""The metrics of ``ehead eval``: pure functions on arrays/tensors, one module per family.

- ``motion``: LVE, FDD, MOD, BA, SID (EmbodiedHead supp. B.2), the motion -> vertices glue with the
  head pose removed, and the ``--baseline`` predictions;
- ``image``: PSNR, SSIM, LPIPS-VGG;
- ``listening``: L2, FD, Variation, Diversity, P-FD, L2 Affect (mm-listener supp. section 6);
- ``vq``: VQ-VAE reconstruction, commitment, perplexity (section 7);
- ``conventions``: ``--convention`` variants that reproduce other codebases, and ``Unavailable``.
"""

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
from ehead_cli.metrics.motion import (
    BASELINES,
    MetricGeometry,
    baseline_motion,
    beat_alignment,
    clip_motion_metrics,
    face_dynamics_deviation,
    geometry_metrics,
    lip_vertex_error,
    metric_geometry,
    motion_to_vertices,
    mouth_opening_difference,
    mouth_openings,
    speaker_identity_diversity,
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
