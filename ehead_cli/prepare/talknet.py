"""TalkNet-ASD (Tao et al., ACM MM 2021), re-implemented to load the official weights.

Who is speaking: one score per 25 fps video frame from a grey face track and its 16 kHz audio.
The network, top to bottom (module names follow the official ``pretrain_TalkSet.model`` state
dict, so it loads key for key):

  visual  112x112 grey crops, (x / 255 - 0.4161) / 0.1688
          -> Conv3d 5x7x7 + BN + ReLU + MaxPool (the only layer that mixes frames, +-2)
          -> ResNet-18 trunk (64..512) -> 512 / frame
          -> V-TCN: 5 residual depthwise-separable temporal convs -> Conv1d 512 -> 128
  audio   13-dim MFCC at 100 Hz (``mfcc.talknet_mfcc``) -> SE-ResNet 2-D encoder
          (channels 16..128, time stride 4) -> 128 / video frame
  fusion  cross-attention both ways (audio queried by video, video queried by audio),
          concatenation (256), self-attention, linear -> 2 logits; the score is logit[1]
          exactly as the official demo reports it (``lossAV.forward(out, labels=None)``).

``talknet_scores`` follows the official demo (``demoTalkNet.evaluate_network``): trim audio and
video to their common length, cut the clip into chunks of d seconds for d in 1..6, score every
chunk on its own and average the six passes. The demo also rounds the average to 0.1 for
display; we keep it unrounded. The heads ``lossA``/``lossV`` are training-only auxiliaries; they
exist here only so the checkpoint loads strictly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli.errors import AssetError
from ehead_cli.layout import MOTION_FPS
from ehead_cli.prepare.mfcc import MFCC_RATE, talknet_mfcc

ENV_VAR = "EHEAD_TALKNET"
FACE_SIZE = 112  # network input, grey pixels
CROP_SIZE = 224  # the demo resizes each face crop to 224 and keeps the central 112
PIXEL_MEAN = 0.4161  # the original input normalisation of grey values in [0, 1]
PIXEL_STD = 0.1688
MFCC_PER_FRAME = MFCC_RATE // MOTION_FPS  # 4 MFCC frames per video frame
DEMO_DURATIONS_S = (1, 2, 3, 4, 5, 6)  # the demo's set {1,1,1,2,2,2,3,3,4,5,6} has six members
TEMPORAL_CONTEXT = 2  # frames each side seen by the 3-D stem (kernel 5); nothing else mixes frames
VISUAL_BLOCK = 64  # frames per pass through the visual stem (bounds memory on long clips)
# The demo's face crop (demoTalkNet.crop_video): box half-size s, 40 % margin, grey 110 padding,
# box centre and size median-filtered over 13 frames.
CROP_SCALE = 0.40
CROP_PAD_VALUE = 110
CROP_MEDIAN_FRAMES = 13
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, what cv2.COLOR_BGR2GRAY uses

D_AUDIO = 128  # per-modality embedding width
D_VISUAL_FRAME = 512
N_HEADS = 8


# --- visual front end ---------------------------------------------------------------------
class ResNetLayer(nn.Module):
    """Two basic blocks of the lip-reading ResNet-18 (deep_avsr style).

    Block a: relu(bn(conv)) -> conv, plus the input (or its 1x1 strided projection), then
    relu(bn). Block b: the same with an identity shortcut. ``downsample`` exists even where the
    stride is 1 (the checkpoint holds it) but is used only when striding.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        bn = dict(momentum=0.01, eps=0.001)
        self.stride = stride
        self.conv1a = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1a = nn.BatchNorm2d(c_out, **bn)
        self.conv2a = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.downsample = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.outbna = nn.BatchNorm2d(c_out, **bn)
        self.conv1b = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn1b = nn.BatchNorm2d(c_out, **bn)
        self.conv2b = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.outbnb = nn.BatchNorm2d(c_out, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.stride == 1 else self.downsample(x)
        mid = self.conv2a(F.relu(self.bn1a(self.conv1a(x)))) + shortcut
        y = F.relu(self.outbna(mid))
        y = self.conv2b(F.relu(self.bn1b(self.conv1b(y)))) + mid
        return F.relu(self.outbnb(y))


class ResNet(nn.Module):
    """(N, 64, 28, 28) -> (N, 512, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.layer1 = ResNetLayer(64, 64, 1)
        self.layer2 = ResNetLayer(64, 128, 2)
        self.layer3 = ResNetLayer(128, 256, 2)
        self.layer4 = ResNetLayer(256, 512, 2)
        self.avgpool = nn.AvgPool2d(4, 1)  # 4x4 map left from a 112 input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.layer4(self.layer3(self.layer2(self.layer1(x)))))


class VisualFrontend(nn.Module):
    """Normalised grey clips (B, 1, T, 112, 112) -> (B, T, 512)."""

    def __init__(self):
        super().__init__()
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, 64, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(64, momentum=0.01, eps=0.001),
            nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.resnet = ResNet()

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        B, _, T = clips.shape[:3]
        y = self.frontend3D(clips)  # (B, 64, T, 28, 28)
        y = y.transpose(1, 2).reshape(B * T, y.shape[1], y.shape[3], y.shape[4])  # frames as a batch
        return self.resnet(y).reshape(B, T, D_VISUAL_FRAME)


class GlobalLayerNorm(nn.Module):
    """Normalise (B, C, T) over channels and time together, per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + self.eps) + self.beta


class DSConv1d(nn.Module):
    """Residual depthwise-separable temporal conv (pre-activation), (B, 512, T) -> same."""

    def __init__(self, channels: int = D_VISUAL_FRAME):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.PReLU(),
            GlobalLayerNorm(channels),
            nn.Conv1d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class VisualTCN(nn.Module):
    N_BLOCKS = 5

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(*[DSConv1d() for _ in range(self.N_BLOCKS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VisualConv1D(nn.Module):
    """(B, 512, T) -> (B, 128, T)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(D_VISUAL_FRAME, 256, 5, padding=2),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Conv1d(256, D_AUDIO, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- audio front end ----------------------------------------------------------------------
class SELayer(nn.Module):
    """Squeeze-and-excitation: channel gates from the global average, reduction 8."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class SEBasicBlock(nn.Module):
    """Residual block; note the original order conv -> ReLU -> BN in the first branch."""

    def __init__(self, c_in: int, c_out: int, stride: int | tuple[int, int] = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SELayer(c_out)
        needs_projection = stride not in (1, (1, 1)) or c_in != c_out
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if needs_projection else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(F.relu(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class AudioEncoder(nn.Module):
    """MFCC (B, 1, 13, 4T) -> (B, T, 128): stride 2 in frequency at the stem, 2x2 twice after."""

    LAYERS = (3, 4, 6, 3)
    CHANNELS = (16, 32, 64, 128)
    STRIDES = (1, (2, 2), (2, 2), (1, 1))

    def __init__(self):
        super().__init__()
        c0 = self.CHANNELS[0]
        self.conv1 = nn.Conv2d(1, c0, 7, (2, 1), 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        c_in = c0
        for i, (n, c, s) in enumerate(zip(self.LAYERS, self.CHANNELS, self.STRIDES, strict=True), start=1):
            blocks = [SEBasicBlock(c_in, c, s)] + [SEBasicBlock(c, c) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 128, 2, T)
        return x.mean(dim=2).transpose(1, 2)


# --- fusion -------------------------------------------------------------------------------
class AttentionLayer(nn.Module):
    """Post-norm transformer layer where ``tar`` queries ``src``; the residual is ``src``.

    Used as cross-attention (src and tar from different modalities, same length) and as
    self-attention (src is tar). Dropout is inactive at inference.
    """

    def __init__(self, d_model: int, n_heads: int = N_HEADS, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, 4 * d_model)
        self.linear2 = nn.Linear(4 * d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
        """(B, T, C), (B, T, C) -> (B, T, C)."""
        attended, _ = self.self_attn(tar, src, src, need_weights=False)
        x = self.norm1(src + self.dropout(attended))
        x = self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x


class TalkNetModel(nn.Module):
    """The network proper; ``TalkNet`` adds the score heads."""

    def __init__(self):
        super().__init__()
        self.visualFrontend = VisualFrontend()
        self.visualTCN = VisualTCN()
        self.visualConv1D = VisualConv1D()
        self.audioEncoder = AudioEncoder()
        self.crossA2V = AttentionLayer(D_AUDIO)
        self.crossV2A = AttentionLayer(D_AUDIO)
        self.selfAV = AttentionLayer(2 * D_AUDIO)

    def visual_temporal(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, T, 512) per-frame features -> (B, T, 128)."""
        x = self.visualConv1D(self.visualTCN(frame_features.transpose(1, 2)))
        return x.transpose(1, 2)

    def audio_embed(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) MFCC -> (B, T, 128)."""
        return self.audioEncoder(mfcc.transpose(1, 2)[:, None])

    def fuse(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """(B, T, 128) each -> (B, T, 256) audio-visual embedding."""
        a = self.crossA2V(src=audio, tar=visual)
        v = self.crossV2A(src=visual, tar=audio)
        av = torch.cat([a, v], dim=2)
        return self.selfAV(src=av, tar=av)


class ScoreHead(nn.Module):
    """Linear -> 2 logits (not speaking, speaking)."""

    def __init__(self, d_in: int):
        super().__init__()
        self.FC = nn.Linear(d_in, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FC(x)


class TalkNet(nn.Module):
    """Network plus heads, laid out like the official checkpoint (``model.*``, ``lossAV.*``, ...)."""

    def __init__(self):
        super().__init__()
        self.model = TalkNetModel()
        self.lossAV = ScoreHead(2 * D_AUDIO)
        self.lossA = ScoreHead(D_AUDIO)  # training-only auxiliary heads
        self.lossV = ScoreHead(D_AUDIO)

    def score(self, frame_features: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, T, 512) visual frame features, (B, 4T, 13) MFCC -> (B, T) speaking scores."""
        visual = self.model.visual_temporal(frame_features)
        audio = self.model.audio_embed(mfcc)
        return self.lossAV(self.model.fuse(audio, visual))[..., 1]

    def forward(self, faces: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) grey faces in [0, 255], (B, 4T, 13) MFCC -> (B, T) scores (one chunk)."""
        return self.score(self.model.visualFrontend(normalise_faces(faces)[:, None]), mfcc)


def normalise_faces(faces: torch.Tensor) -> torch.Tensor:
    """Grey values in [0, 255] -> the original input normalisation."""
    return (faces.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD


# --- loading ------------------------------------------------------------------------------
def resolve_talknet_path(path: str | os.PathLike | None) -> Path:
    """The checkpoint path from the argument or ``EHEAD_TALKNET``; a one-line error when unset."""
    chosen = path if path not in (None, "") else os.environ.get(ENV_VAR)
    if not chosen:
        raise AssetError(
            f"TalkNet-ASD weights are not configured: pass --talknet PATH or set {ENV_VAR} "
            "(pretrain_TalkSet.model from TaoRuijie/TalkNet-ASD)"
        )
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise AssetError(f"{p}: TalkNet-ASD weights not found (from --talknet / {ENV_VAR})")
    return p


def load_talknet(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> TalkNet:
    """Load the official ``pretrain_TalkSet.model`` state dict (strict key and shape match).

    A leading ``module.`` (a DataParallel save) is stripped, as the official loader does.
    """
    p = resolve_talknet_path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable or non-weights file
        reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        raise AssetError(f"{p}: not a TalkNet-ASD state dict ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AssetError(f"{p}: not a TalkNet-ASD state dict (expected a mapping of names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = TalkNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise AssetError(
            f"{p}: not the TalkNet-ASD checkpoint layout ({len(missing)} missing keys, e.g. "
            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    wrong = [k for k, v in expected.items() if v.shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise AssetError(f"{p}: {len(wrong)} TalkNet-ASD weights have the wrong shape, e.g. {k} "
                         f"{tuple(state[k].shape)} != {tuple(expected[k].shape)}")
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


# --- face crops ---------------------------------------------------------------------------
def to_grey(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W) grey or (T, H, W, 3) RGB, uint8 or float in [0, 255] -> (T, H, W) float32 grey."""
    x = torch.as_tensor(np.asarray(frames)).float()
    if x.ndim == 4 and x.shape[-1] == 3:
        x = (x * torch.tensor(GREY_WEIGHTS)).sum(-1).round()
    if x.ndim != 3:
        raise ValueError(f"expected (T, H, W) grey or (T, H, W, 3) RGB frames, got {tuple(x.shape)}")
    return x


def talknet_face_crops(frames: np.ndarray | torch.Tensor, boxes: np.ndarray) -> np.ndarray:
    """The demo's face crop: (T, H, W[, 3]) frames, (T, 4) x1 y1 x2 y2 boxes (px) -> (T, 224, 224) uint8.

    Box centre and half-size ``s = max(w, h) / 2`` are median-filtered over 13 frames; the square
    crop spans rows cy - s .. cy + 1.8 s and columns cx - 1.4 s .. cx + 1.4 s (the face sits in its
    upper part), out-of-frame pixels are grey 110, and it is resized to 224 x 224.
    """
    grey = to_grey(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (grey.shape[0], 4):
        raise ValueError(f"expected boxes ({grey.shape[0]}, 4), got {boxes.shape}")
    kernel = min(CROP_MEDIAN_FRAMES, 2 * ((len(boxes) - 1) // 2) + 1)  # medfilt needs an odd kernel
    half = scipy.signal.medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel)
    cy = scipy.signal.medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel)
    cx = scipy.signal.medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel)
    crops = []
    for t in range(grey.shape[0]):
        s = max(float(half[t]), 1.0)  # a degenerate box still yields a (tiny) crop
        pad = int(s * (1 + 2 * CROP_SCALE))
        img = F.pad(grey[t], (pad, pad, pad, pad), value=CROP_PAD_VALUE)
        my, mx = cy[t] + pad, cx[t] + pad
        face = img[int(my - s): int(my + s * (1 + 2 * CROP_SCALE)),
                   int(mx - s * (1 + CROP_SCALE)): int(mx + s * (1 + CROP_SCALE))]
        crops.append(_resize(face[None], CROP_SIZE)[0])
    return torch.stack(crops).clamp(0, 255).round().to(torch.uint8).numpy()


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(T, H, W) -> (T, size, size) bilinear with half-pixel centres (cv2.INTER_LINEAR)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def prepare_faces(faces: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Face crops (T, 112, 112) as is, or any (T, H, W[, 3]) crop as the demo reads its 224 crop
    video: resized to 224 x 224, rounded to uint8 levels, central 112 x 112 kept -> (T, 112, 112)."""
    x = to_grey(faces)
    if x.shape[-2:] == (FACE_SIZE, FACE_SIZE):
        return x
    x = _resize(x, CROP_SIZE).clamp(0, 255).round()
    lo = (CROP_SIZE - FACE_SIZE) // 2
    return x[:, lo: lo + FACE_SIZE, lo: lo + FACE_SIZE]


# --- scoring ------------------------------------------------------------------------------
def _stem_features(net: TalkNet, clips: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, 112, 112) normalised -> (B, T, 512), in blocks of frames with +-2 frames context."""
    frontend = net.model.visualFrontend
    T = clips.shape[2]
    out = []
    for a in range(0, T, VISUAL_BLOCK):
        b = min(a + VISUAL_BLOCK, T)
        lo, hi = max(a - TEMPORAL_CONTEXT, 0), min(b + TEMPORAL_CONTEXT, T)
        out.append(frontend(clips[:, :, lo:hi])[:, a - lo: b - lo])
    return torch.cat(out, dim=1)


def _chunk_edge_features(net: TalkNet, x: torch.Tensor, frames: list[int], bounds: list[tuple[int, int]]) \
        -> torch.Tensor:
    """Per-frame features as if the clip were cut at ``bounds``: (N,) frames -> (N, 512).

    A frame's feature depends only on the 5 frames around it (the 3-D stem); the chunk's own
    zero padding replaces neighbours outside [start, end). x: (T, 112, 112) normalised.
    """
    T = x.shape[0]
    width = 2 * TEMPORAL_CONTEXT + 1
    windows = x.new_zeros(len(frames), 1, width, *x.shape[1:])
    for i, (t, (start, end)) in enumerate(zip(frames, bounds, strict=True)):
        for j in range(width):
            u = t - TEMPORAL_CONTEXT + j
            if start <= u < end and 0 <= u < T:
                windows[i, 0, j] = x[u]
    out = []
    for a in range(0, len(frames), VISUAL_BLOCK):
        out.append(net.model.visualFrontend(windows[a: a + VISUAL_BLOCK])[:, TEMPORAL_CONTEXT])
    return torch.cat(out, dim=0)


def _score_chunks(net: TalkNet, feats: torch.Tensor, mfcc: torch.Tensor, chunk: int) -> torch.Tensor:
    """Score consecutive chunks of ``chunk`` frames independently. (T, 512), (4T, 13) -> (T,)."""
    T = feats.shape[0]
    n_full = T // chunk
    scores = []
    if n_full:
        v = feats[: n_full * chunk].reshape(n_full, chunk, -1)
        a = mfcc[: n_full * chunk * MFCC_PER_FRAME].reshape(n_full, chunk * MFCC_PER_FRAME, -1)
        scores.append(net.score(v, a).reshape(-1))
    if T > n_full * chunk:  # the shorter last chunk
        s = n_full * chunk
        scores.append(net.score(feats[None, s:], mfcc[None, s * MFCC_PER_FRAME:])[0])
    return torch.cat(scores)


def _score_chunking(net: TalkNet, x: torch.Tensor, base: torch.Tensor, mfcc: torch.Tensor, chunk: int) \
        -> torch.Tensor:
    """Scores (n,) with the clip cut every ``chunk`` frames; ``base`` holds the uncut features."""
    n = x.shape[0]
    frames, bounds = [], []
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        for t in range(start, end):
            after_cut = start > 0 and t - start < TEMPORAL_CONTEXT
            before_cut = end < n and end - 1 - t < TEMPORAL_CONTEXT
            if after_cut or before_cut:
                frames.append(t)
                bounds.append((start, end))
    feats = base.clone()
    if frames:
        feats[frames] = _chunk_edge_features(net, x, frames, bounds)
    return _score_chunks(net, feats, mfcc, chunk)


@torch.inference_mode()
def talknet_scores(net: TalkNet, faces: np.ndarray | torch.Tensor, audio16k: np.ndarray,
                   durations_s: tuple[float, ...] = DEMO_DURATIONS_S) -> np.ndarray:
    """Speaking scores of one face track: (T, H, W[, 3]) crops at 25 fps + its 16 kHz audio -> (T,).

    The score is the network's 'speaking' logit as the official demo reports it (> 0 means
    speaking). Audio (4 MFCC frames per video frame) and video are trimmed to their common length
    n = min(n_mfcc // 4, T), as the demo does; frames past n (normally only the last, since
    T x 640 samples give 4T - 1 MFCC frames) repeat the last score. Every chunking of
    ``durations_s`` is scored and the results averaged. A frame's visual features only change
    under chunking within 2 frames of a cut, so the stem runs once over the clip and again only
    for those frames: the same numbers as the demo's per-chunk passes at a fraction of the cost.
    """
    device = next(net.parameters()).device
    x = normalise_faces(prepare_faces(faces)).to(device)  # (T, 112, 112)
    T = x.shape[0]
    mfcc = torch.from_numpy(talknet_mfcc(audio16k)).to(device)  # (~4T, 13) at 100 Hz
    n = min(mfcc.shape[0] // MFCC_PER_FRAME, T)
    if T == 0 or n == 0:
        raise ValueError(f"need at least one video frame and {MFCC_PER_FRAME} MFCC frames "
                         f"({T} frames, {mfcc.shape[0]} MFCC frames of audio)")
    x, mfcc = x[:n], mfcc[: n * MFCC_PER_FRAME]
    base = _stem_features(net, x[None, None])[0]  # (n, 512) with no cuts

    per_chunking: dict[int, torch.Tensor] = {}  # chunks longer than the clip all mean one pass
    total = torch.zeros(n, device=device)
    for d in durations_s:
        chunk = min(max(1, round(d * MOTION_FPS)), n)
        if chunk not in per_chunking:
            per_chunking[chunk] = _score_chunking(net, x, base, mfcc, chunk)
        total += per_chunking[chunk]
    scores = (total / len(durations_s)).float().cpu().numpy()
    return np.concatenate([scores, np.full(T - n, scores[-1], dtype=np.float32)])
