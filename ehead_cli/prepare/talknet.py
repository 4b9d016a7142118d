"""TalkNet-ASD (Tao et al., ACM MM 2021): who is speaking, with the official weights and demo protocol.

One score per 25 fps video frame from a grey face track and its 16 kHz audio. The network is
``prepare.talknet_net`` (module names follow the official ``pretrain_TalkSet.model``, so it loads
key for key); this module loads the weights (``load_talknet``), makes the demo's face crops
(``talknet_face_crops``) and scores a clip.

``talknet_scores`` follows the official demo (``demoTalkNet.evaluate_network``): trim audio and
video to their common length, cut the clip into chunks of d seconds for d in 1..6, score every
chunk on its own and average the six passes. The demo also rounds the average to 0.1 for
display; we keep it unrounded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F

from ehead_cli.errors import AssetError
from ehead_cli.layout import MOTION_FPS
from ehead_cli.prepare.mfcc import MFCC_RATE, talknet_mfcc
from ehead_cli.prepare.talknet_net import TalkNet, normalise_faces

__all__ = ["ENV_VAR", "TalkNet", "load_talknet", "prepare_faces", "resolve_talknet_path", "talknet_face_crops",
           "talknet_scores", "to_grey"]

ENV_VAR = "EHEAD_TALKNET"
FACE_SIZE = 112  # network input, grey pixels
CROP_SIZE = 224  # the demo resizes each face crop to 224 and keeps the central 112
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
