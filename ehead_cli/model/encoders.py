"""Audio encoders. Both produce a stack of hidden layers at 50 Hz that the DiT fuses with
learnable softmax weights:

    wave (B, N) at 16 kHz  ->  frontend  ->  hidden stack (B, N_l, N / 320, C) at 50 Hz

The work is split in two so that the frozen, expensive part can be cached on disk:

* ``frontend(wave)``: deterministic, no trainable parameters (log-mel for ``MelEncoder``, the whole
  frozen network for ``HubertEncoder``). Cacheable, keyed by file content and ``identity``.
* ``forward(front)``: the trainable rest (the conv stack of ``MelEncoder``; identity for HuBERT).

Frame alignment: feature frame j covers samples [320 j, 320 j + 400) for HuBERT (its conv front end
has a 400-sample receptive field and stride 320, so the input is right-padded with 80 zeros) and
[320 j, 320 j + 320) for the log-mel (a 20 ms window per 20 ms hop). Either way a window of T
motion frames (640 T samples) gives exactly 2T feature frames and never reads audio past its end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli import assets
from ehead_cli.errors import AssetError
from ehead_cli.io.atomic import atomic_path, sha256_file
from ehead_cli.layout import FEATURE_HOP, SAMPLE_RATE
from ehead_cli.model.config import AudioEncoderConfig

HUBERT_RECEPTIVE = 400  # samples seen by one HuBERT frame (conv kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2)
MEL_N_FFT = 512  # FFT size; the 320-sample Hann window is zero-padded to it
MEL_FMIN, MEL_FMAX = 0.0, SAMPLE_RATE / 2
LOG_FLOOR = 1e-6
LOG_OFFSET, LOG_SCALE = 6.0, 4.0  # fixed affine so log-mel values sit roughly in [-1, 2]


def n_feature_frames(n_samples: int) -> int:
    """Feature frames (50 Hz) for ``n_samples`` of 16 kHz audio: ceil(N / 320)."""
    return -(-n_samples // FEATURE_HOP)


def _pad_to_hop(wave: torch.Tensor, extra: int = 0) -> torch.Tensor:
    """Right-pad (B, N) with zeros to a multiple of the hop, plus ``extra`` samples."""
    n = n_feature_frames(wave.shape[-1]) * FEATURE_HOP
    return F.pad(wave, (0, n - wave.shape[-1] + extra))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int = MEL_N_FFT, sr: int = SAMPLE_RATE,
                   fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, peak 1."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - mid, 1e-9)
    fb = np.clip(np.minimum(up, down), 0.0, None)  # (n_mels, F)
    return torch.tensor(fb.T, dtype=torch.float32)


def dft_basis(frame: int = FEATURE_HOP, n_fft: int = MEL_N_FFT) -> torch.Tensor:
    """(frame, 2 (n_fft / 2 + 1)) float32: the real DFT of a periodic-Hann-windowed frame zero-padded
    to ``n_fft``, as [cos | -sin] columns, so ``frames @ basis`` gives the real and imaginary parts
    of ``rfft(frames * hann, n_fft)``."""
    n = torch.arange(frame, dtype=torch.float64)[:, None]
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[None]
    angle = 2 * torch.pi * n * k / n_fft
    window = torch.hann_window(frame, periodic=True, dtype=torch.float64)[:, None]
    return torch.cat([window * angle.cos(), -window * angle.sin()], dim=1).float()


def _no_autocast(device: torch.device):
    """Autocast off (fp32 arithmetic) on devices that have it; a no-op context elsewhere (meta)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def log_mel(wave: torch.Tensor, filterbank: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N) 16 kHz -> (B, ceil(N / 320), n_mels) log-mel at 50 Hz, one 20 ms Hann frame per hop.

    Always in fp32, also inside a bf16 autocast region, so generation sees the features training
    saw. The power spectrum is a matrix product with ``basis`` (``dft_basis()``, the rfft written
    as a real DFT): one GEMM on any device, and real arithmetic that ``torch.compile`` fuses."""
    with _no_autocast(wave.device):
        wave = _pad_to_hop(wave.float())
        frames = wave.unfold(-1, FEATURE_HOP, FEATURE_HOP)  # (B, S, 320)
        basis = dft_basis().to(wave.device) if basis is None else basis
        spec = (frames @ basis).pow(2).unflatten(-1, (2, -1)).sum(-2)  # (B, S, 257) power: re^2 + im^2
        mel = spec @ filterbank.to(wave.device)
        return (torch.log(mel + LOG_FLOOR) + LOG_OFFSET) / LOG_SCALE


class ConvBlock(nn.Module):
    """Residual 1-D conv block at 50 Hz: x + GELU(Conv1d(LayerNorm(x)))."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2))


class MelEncoder(nn.Module):
    """The offline default: fixed log-mel at 50 Hz, then a small trainable conv stack.

    Hidden stack: h_0 = LayerNorm(Linear(log-mel)), h_i = ConvBlock(h_{i-1}); (B, n_layers, S, dim).
    """

    frozen = False
    window_local = True  # a window's front end is exactly a slice of its clip's (cacheable per clip)

    def __init__(self, cfg: AudioEncoderConfig):
        super().__init__()
        if cfg.kind != "mel":
            raise ValueError("MelEncoder needs audio.kind = 'mel'")
        self.cfg = cfg
        self.register_buffer("filterbank", mel_filterbank(cfg.n_mels), persistent=False)
        self.register_buffer("dft", dft_basis(), persistent=False)
        self.inp = nn.Sequential(nn.Linear(cfg.n_mels, cfg.dim), nn.LayerNorm(cfg.dim))
        self.blocks = nn.ModuleList(ConvBlock(cfg.dim, cfg.conv_kernel) for _ in range(cfg.n_layers - 1))

    @property
    def identity(self) -> str:
        return f"logmel-v1-n{self.cfg.n_mels}-hop{FEATURE_HOP}-fft{MEL_N_FFT}"

    @torch.no_grad()
    def frontend(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, S, n_mels) log-mel."""
        return log_mel(wave, self.filterbank, self.dft)

    def forward(self, front: torch.Tensor) -> torch.Tensor:
        """(B, S, n_mels) -> (B, n_layers, S, dim)."""
        h = self.inp(front)
        out = [h]
        for blk in self.blocks:
            h = blk(h)
            out.append(h)
        return torch.stack(out, dim=1)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        return self(self.frontend(wave))


class HubertEncoder(nn.Module):
    """A frozen HuBERT-family model (mHuBERT-147 layout: ``HubertModel`` in a transformers folder)
    returning all hidden states: (B, num_hidden_layers + 1, S, hidden_size) at 50 Hz."""

    frozen = True
    window_local = False  # self-attention over the whole input: encode each window on its own

    def __init__(self, cfg: AudioEncoderConfig, path: str | os.PathLike | None = None, *,
                 model: nn.Module | None = None):
        """Load the model folder at ``path`` (or EHEAD_HUBERT); or wrap an in-memory ``HubertModel``
        (``model=``, e.g. random weights of the real architecture for speed measurements)."""
        super().__init__()
        if model is None:
            folder = assets.resolve("hubert", path)
            model = _load_hubert_folder(folder)
            pre = folder / "preprocessor_config.json"
            self.normalize = bool(json.loads(pre.read_text()).get("do_normalize", False)) if pre.is_file() else False
            self._identity = "hubert-" + _folder_digest(folder)
        else:
            folder = None
            self.normalize = False
            self._identity = "hubert-in-memory"
        hc = model.config
        if hc.num_hidden_layers + 1 != cfg.n_layers or hc.hidden_size != cfg.dim:
            raise AssetError(f"{folder or 'HuBERT'}: HuBERT has {hc.num_hidden_layers + 1} hidden states of width "
                             f"{hc.hidden_size}, the model config expects {cfg.n_layers} of width {cfg.dim}")
        self.cfg, self.folder = cfg, folder
        self.model = model.eval().requires_grad_(False)

    @property
    def identity(self) -> str:
        return self._identity

    def train(self, mode: bool = True):  # the encoder stays frozen in eval mode
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def frontend(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, N_l, ceil(N / 320), C): every hidden state of the frozen model."""
        wave = wave.float()
        if self.normalize:  # Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation
            wave = (wave - wave.mean(-1, keepdim=True)) / torch.sqrt(wave.var(-1, keepdim=True) + 1e-7)
        x = _pad_to_hop(wave, extra=HUBERT_RECEPTIVE - FEATURE_HOP)
        dtype = next(self.model.parameters()).dtype
        out = self.model(x.to(dtype), output_hidden_states=True)
        return torch.stack(out.hidden_states, dim=1).float()

    def forward(self, front: torch.Tensor) -> torch.Tensor:
        return front

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave)


def _load_hubert_folder(folder: Path) -> nn.Module:
    from transformers import HubertModel
    from transformers.utils import logging as hf_logging

    if not (folder / "config.json").is_file():
        raise AssetError(f"{folder}: not a transformers model folder (no config.json); "
                         f"point --audio-encoder / EHEAD_HUBERT at the mHuBERT-147 folder")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return HubertModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise AssetError(f"{folder}: cannot load a HuBERT model ({str(err).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def random_hubert_base(n_layers: int = 12, dim: int = 768) -> nn.Module:
    """A HuBERT-base network (the mHuBERT-147 architecture) with random weights: its speed is the
    real one, its output is not."""
    from transformers import HubertConfig, HubertModel

    return HubertModel(HubertConfig(hidden_size=dim, num_hidden_layers=n_layers))


def _folder_digest(folder: Path) -> str:
    """Short content hash of a model folder's config and weight files (the encoder's identity)."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin") and f.is_file():
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()[:16]


def build_encoder(cfg: AudioEncoderConfig, hubert_path: str | os.PathLike | None = None) -> nn.Module:
    """The encoder a model config names: ``MelEncoder`` or a frozen ``HubertEncoder`` from a local folder."""
    if cfg.kind == "mel":
        return MelEncoder(cfg)
    return HubertEncoder(cfg, hubert_path)


class FeatureCache:
    """On-disk cache of encoder front-end outputs, keyed by audio content and encoder identity.

    Files are ``<root>/<key[:2]>/<key>.npy`` (float16 for HuBERT stacks, float32 for log-mel),
    written atomically. The default root is ``$EHEAD_CACHE/features`` or ``~/.cache/ehead/features``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            base = os.environ.get("EHEAD_CACHE") or Path.home() / ".cache" / "ehead"
            root = Path(base) / "features"
        self.root = Path(root)

    @staticmethod
    def key(wave: np.ndarray, identity: str, extra: str = "") -> str:
        h = hashlib.sha256()
        h.update(identity.encode())
        h.update(extra.encode())
        h.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def frontend(self, encoder: nn.Module, wave: np.ndarray, extra: str = "") -> torch.Tensor:
        """``encoder.frontend`` of one (N,) waveform, from the cache when present. Returns (1, ...)."""
        path = self.path(self.key(wave, encoder.identity, extra))
        if path.is_file():
            try:
                return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a damaged entry is recomputed
        device = next((b.device for b in encoder.buffers()), torch.device("cpu"))
        front = encoder.frontend(torch.from_numpy(np.asarray(wave, np.float32))[None].to(device)).cpu()
        dtype = np.float16 if getattr(encoder, "frozen", False) else np.float32
        with atomic_path(path) as tmp:
            np.save(tmp, front.numpy().astype(dtype))
        return front

