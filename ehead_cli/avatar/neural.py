"""The neural avatar: a differentiable renderer (shape, motion) -> photoreal frames of one person.

Deferred neural rendering, per frame:

1. the face model poses its mesh (identity shape + head-centred motion);
2. the clip's camera (``ClipCamera``: the video's lens and the head's rest pose, cropped to the
   avatar's face-centred square) projects it; the built-in rasteriser finds the visible triangle per
   pixel and its perspective-correct barycentric weights (differentiable in the vertex positions);
3. the feature field (``avatar.field``) and the camera-space vertex normals are interpolated into
   a feature image, with the coverage mask and the pixel coordinates as extra channels;
4. the U-Net (``avatar.unet``), FiLM-conditioned on the head pose, turns it into RGB and alpha;
   hair, neck, shoulders and the inside of the mouth come from it, not from the mesh;
5. RGB is composited over a learned background image: ``alpha rgb + (1 - alpha) background``.

Everything after the (piecewise-constant) visibility is differentiable: with respect to the
motion (through the vertex positions, the normals and the pose input) and to every weight (the
features, the U-Net, the background), so Stage II can train through it on one-step endpoints.
As with any hard rasteriser, silhouettes and occlusion edges carry no gradient: the gradient is
that of the image with the visibility held fixed (the tests check exactly that against finite
differences).

``images`` is the differentiable batch call; ``render`` and ``iter_frames`` give uint8 frames in
batches: a ``render.base.FrameRenderer``, as the mesh renderers are, so every command can use either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli.avatar.config import NeuralConfig
from ehead_cli.avatar.field import FeatureField
from ehead_cli.avatar.unet import UNet
from ehead_cli.devices import autocast_dtype
from ehead_cli.face.base import FaceModel
from ehead_cli.layout import ROT, TRANS
from ehead_cli.render.base import FrameSource, check_frames
from ehead_cli.render.clip_camera import ClipCamera
from ehead_cli.render.rasterizer import Fragments, barycentrics, rasterize
from ehead_cli.render.renderer import is_closed
from ehead_cli.render.shading import vertex_normals

RENDER_BATCH = 8  # frames per network call in ``render`` / ``iter_frames``
# The pose the U-Net sees, scaled to about unit size: head rotation (rad) x 10, translation (m) x 100.
ROT_SCALE = 10.0
TRANS_SCALE = 100.0
POSE_DIM = 6
EXTRA_CHANNELS = 3 + 1 + 2  # camera-space normal, coverage mask, pixel coordinates (x, y in [-1, 1])


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles), where oneDNN's bf16
    convolutions beat fp32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


@dataclass(frozen=True)
class AvatarImages:
    """image (N, S, S, 3) float in [0, 1]; alpha (N, S, S) of the network over the background;
    mask (N, S, S) bool mesh coverage; fragments: the visibility, for reuse."""

    image: torch.Tensor
    alpha: torch.Tensor
    mask: torch.Tensor
    fragments: Fragments


class NeuralAvatar(FrameSource, nn.Module):
    """The renderer of one person (module docstring). ``camera`` must describe ``cfg.size`` square
    images; ``background`` (3, S, S) in [0, 1] initialises the learned background (grey if None)."""

    def __init__(self, face: FaceModel, camera: ClipCamera, cfg: NeuralConfig,
                 background: torch.Tensor | None = None) -> None:
        super().__init__()
        cfg.validate()
        S = cfg.size
        if (camera.height, camera.width) != (S, S):
            raise ValueError(f"the avatar camera describes {camera.height}x{camera.width} images, not {S}x{S}")
        self.cfg, self.camera = cfg, camera
        self.face = face.eval().requires_grad_(False)  # the face model is fixed; its buffers move with .to()
        self.field = FeatureField(face, cfg.learned_features)
        self.unet = UNet(self.field.channels + EXTRA_CHANNELS, cfg.channels, cfg.unshuffle, POSE_DIM, cfg.pose_hidden)
        bg = torch.full((3, S, S), 0.5) if background is None else background.detach().float().clamp(0, 1)
        self.background = nn.Parameter(bg.clone())
        ys, xs = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
        coords = torch.stack([xs, ys], -1).float().add(0.5).mul(2.0 / S).sub(1.0)  # (S, S, 2) pixel centres
        self.register_buffer("coords", coords.view(S * S, 2), persistent=False)
        self.cull_backfaces = is_closed(face.faces)  # exact for a closed mesh; FLAME's mouth is open
        self.batch_size = RENDER_BATCH
        self.compute_dtype: torch.dtype | None = None  # the U-Net's autocast dtype; None: devices.autocast_dtype

    @property
    def device(self) -> torch.device:
        return self.background.device

    @property
    def size(self) -> int:
        return self.cfg.size

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The avatar's own weights (features, U-Net, background); the face model is not stored."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("face.")}

    # --- the differentiable renderer ------------------------------------------------------------
    def images(self, shape: torch.Tensor, motion: torch.Tensor, pose_noise: torch.Tensor | None = None,
               fragments: Fragments | None = None, camera: ClipCamera | None = None) -> AvatarImages:
        """Differentiable. shape (300,) or (N, 300), motion (N, 115) head-centred -> AvatarImages.
        ``pose_noise`` (N, 6) is added to the pose the network sees (the fit's jitter); ``fragments``
        reuses a visibility (the gradient is that of the image with the visibility held fixed);
        ``camera`` (S x S) replaces the avatar's own for this call (Stage II renders each clip
        through the camera of its frames)."""
        shape, motion = self._frames(shape, motion)
        N, S = motion.shape[0], self.cfg.size
        cam = self.camera if camera is None else camera
        vertices = self.face(shape, motion)  # (N, V, 3) metres, head-centred world
        V = vertices.shape[1]
        world = vertices.reshape(N * V, 3).T  # (3, N*V) channel-major, see the rasteriser
        points = cam.project_channels(world, S, S).view(3, N, V)  # pixel x, pixel y, depth
        faces = self.face.faces
        frags = fragments if fragments is not None else rasterize(points.detach(), faces, S, S, cam.near,
                                                                   cam.far, self.cull_backfaces)
        weights, vid = barycentrics(frags, points, faces)  # (3, P) each, vid flat into N*V
        R = torch.tensor(cam.pose, dtype=world.dtype, device=world.device)[:3, :3]
        normals = (R @ vertex_normals(world.view(3, N, V), faces).view(3, N * V)).T  # (N*V, 3) camera space
        # barycentric interpolation as a weighted embedding-bag sum: one fused gather per attribute
        w = weights.T.contiguous()  # (P, 3)
        feats = F.embedding_bag((vid % V).T.contiguous(), self.field(), per_sample_weights=w, mode="sum")  # (P, C_f)
        nrm = F.embedding_bag(vid.T.contiguous(), normals.contiguous(), per_sample_weights=w, mode="sum")  # (P, 3)
        pix = frags.pix
        covered = torch.cat([feats, nrm, torch.ones_like(nrm[:, :1]), self.coords.index_select(0, pix % (S * S))], 1)
        # the U-Net's input, channels-last: features, normal, coverage, pixel coordinates
        x = covered.new_zeros(N, S * S, covered.shape[1])
        x[:, :, -2:] = self.coords
        x = x.view(N * S * S, -1)
        x = x.index_copy(0, pix, covered).view(N, S, S, -1).permute(0, 3, 1, 2)  # (N, C_in, S, S)
        mask = frags.mask
        pose = torch.cat([motion[:, ROT] * ROT_SCALE, motion[:, TRANS] * TRANS_SCALE], -1)  # (N, 6)
        if pose_noise is not None:
            pose = pose + pose_noise
        with torch.autocast(x.device.type, dtype=self._dtype(), enabled=self._dtype() != torch.float32):
            rgb, alpha_logit = self.unet(x, pose)
        dtype = self.background.dtype
        rgb, alpha = rgb.to(dtype), torch.sigmoid(alpha_logit.to(dtype))
        image = alpha * rgb + (1 - alpha) * self.background.clamp(0, 1)
        return AvatarImages(image.permute(0, 2, 3, 1), alpha[:, 0], mask, frags)

    def _dtype(self) -> torch.dtype:
        """The U-Net's autocast dtype: ``compute_dtype`` when set; while fitting, bf16 on GPUs with
        native bf16 and fp32 elsewhere (``devices.autocast_dtype``); when rendering, also bf16 on CPUs
        with AMX tile units (Sapphire Rapids and later), where it renders about 1.8x faster with the
        same held-out PSNR (measured: 33.80 vs 33.80 dB, docs/avatar.md)."""
        if self.compute_dtype is not None:
            return self.compute_dtype
        if not self.training and self.device.type == "cpu" and cpu_native_bf16():
            return torch.bfloat16
        return autocast_dtype(self.device)

    def _frames(self, shape: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bring to (1 or N, 300) and (N, 115) in the avatar's dtype on its device; ValueError on wrong shapes."""
        return check_frames(shape, motion, self.device, self.background.dtype)

    # --- frames for video (render.base.FrameRenderer) ------------------------------------------------
    @property
    def needs(self) -> str:
        return self.face.name

    def frame_inputs(self, shape: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._frames(shape, motion)

    def frame_images(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return self.images(shape, motion).image
