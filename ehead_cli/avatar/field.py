"""The neural feature field: features on the face model's canonical surface, carried by its vertices.

Each vertex holds ``FIXED_CHANNELS`` + ``learned`` feature channels; the rasteriser interpolates
them (perspective-correct barycentrics) into a feature image, which the image network reads. The
field lives on the canonical surface, so a feature stays on its patch of skin, lip or tooth however
the motion poses the mesh.

Fixed channels (not trained), the same for every avatar of a face model:

* albedo (3): the face model's vertex colours, mapped from [0, 1] to [-1, 1]; the built-in head paints
  skin, lips, brows, eyes, teeth, tongue and throat differently, so even a vertex the video never
  showed (deep in the mouth when the jaw opens wider than it did on camera) tells the network
  what it is;
* canonical position (3): the template vertex (no identity, no expression, no pose), scaled into
  [-1, 1] by the template's bounding box: where on the head the pixel is.

Learned channels start at zero and are pulled toward zero by the fit's ``feature_decay``, so
unseen vertices keep the neutral value the network learned to read alongside their fixed channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ehead_cli.face.base import FaceModel

FIXED_CHANNELS = 6  # albedo (3) + canonical position (3)


class FeatureField(nn.Module):
    """(V, C) per-vertex features of ``face`` (C = FIXED_CHANNELS + learned)."""

    def __init__(self, face: FaceModel, learned: int) -> None:
        super().__init__()
        template = face.v_template.detach().float()  # (V, 3) metres
        lo, hi = template.amin(0), template.amax(0)
        canonical = (2 * (template - lo) / (hi - lo).clamp_min(1e-6) - 1).T  # (3, V) in [-1, 1]
        albedo = (2 * face.vertex_colors.detach().float() - 1).T  # (3, V) in [-1, 1]
        self.register_buffer("fixed", torch.cat([albedo, canonical]).T.contiguous())  # (V, 6)
        self.learned = nn.Parameter(torch.zeros(face.n_vertices, learned))  # (V, learned)

    @property
    def channels(self) -> int:
        return FIXED_CHANNELS + self.learned.shape[1]

    def forward(self) -> torch.Tensor:
        """(V, C) features, vertex-major (one row gathered per triangle corner); learned channels
        first, then albedo and canonical position."""
        return torch.cat([self.learned, self.fixed], 1)
