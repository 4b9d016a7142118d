"""The offline listening/speaking labeler: Silero VAD on the clip's audio, gated by mouth motion.

Voice activity alone says *someone* speaks; the avatar's training label must say *the person in
the video* speaks. So, per 25 fps frame:

1. ``p_voice``: Silero VAD (snakers4/silero-vad, MIT) speech probability. The network is
   re-implemented here in plain torch and loads ``silero_vad/data/silero_vad_16k.safetensors``,
   the 16 kHz weights the ``silero-vad`` wheel ships (no download, no TorchScript, no pickle). It
   scores 32 ms chunks (512 samples plus the previous 64 as context, a 256-point STFT as a fixed
   convolution, four 1-D convs, an LSTM cell carried across chunks); chunk probabilities are
   interpolated to the centre of each 40 ms frame. These weights are not bit-identical to the
   package's TorchScript model (``silero_vad.jit``); on LibriSpeech and GRID clips the two agree
   on 95-100 % of chunks at the 0.5 threshold.
2. ``gate``: when a face track exists, how much the tracked mouth moves. The inner-lip opening
   (face-model landmarks 62 and 66, metres) has its standard deviation taken over a centred
   ``MOUTH_WINDOW_S`` window; the gate ramps linearly from 0 at ``MOUTH_STILL_M`` to 1 at
   ``MOUTH_MOVING_M``. A still mouth (gate 0) turns voice into listening: the speech belongs to
   someone else. Without a track the gate is 1.
3. ``score = p_voice * gate`` -> ``smoothing.scores_to_states`` (0.2 s moving average, threshold
   0.5, runs shorter than 0.2 s absorbed) -> states in {+1 speak, -1 listen}.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli.errors import AssetError
from ehead_cli.layout import MOTION_FPS, SAMPLES_PER_FRAME
from ehead_cli.prepare.smoothing import moving_average, scores_to_states

# --- Silero VAD (v5 and v6 share this architecture), 16 kHz branch ----------------------------
CHUNK = 512  # new samples per network step (32 ms)
CONTEXT = 64  # samples of the previous chunk prepended to each step
N_FFT = 256  # the STFT as a fixed convolution: 256-sample windows ...
HOP = 128  # ... every 128 samples
N_BINS = N_FFT // 2 + 1  # 129 magnitude bins
HIDDEN = 128  # LSTM width
WEIGHTS_PACKAGE = "silero_vad"
WEIGHTS_DIR = "data"
WEIGHTS_FILE = "silero_vad_16k.safetensors"
INSTALL_HINT = 'pip install silero-vad (or pip install -e . in the ehead checkout)'

# --- mouth gate -----------------------------------------------------------------------------------
MOUTH_WINDOW_S = 0.4  # about two syllables: long enough to see a mouth move, short enough to follow turns
MOUTH_STILL_M = 0.0005  # std of the lip gap (m) below which the mouth counts as still (tracking jitter)
MOUTH_MOVING_M = 0.002  # std (m) above which it clearly articulates (speech moves the lips by cm)


class SileroVAD(nn.Module):
    """Silero VAD, 16 kHz: (N,) waveform in [-1, 1] -> (ceil(N / 512),) speech probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 2 * N_BINS, N_FFT, stride=HOP, bias=False)  # real | imaginary rows
        self.conv1 = nn.Conv1d(N_BINS, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, HIDDEN, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(HIDDEN, HIDDEN)
        self.final_conv = nn.Conv1d(HIDDEN, 1, 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.shape[0]
        n_chunks = max(1, -(-n // CHUNK))
        padded = F.pad(wave, (CONTEXT, n_chunks * CHUNK - n))  # zero context before the first chunk
        steps = padded.unfold(0, CONTEXT + CHUNK, CHUNK)  # (K, 576): every chunk with its context
        x = F.pad(steps[:, None], (0, CONTEXT), mode="reflect")  # (K, 1, 640)
        x = self.stft_conv(x)  # (K, 258, 4)
        x = (x[:, :N_BINS] ** 2 + x[:, N_BINS:] ** 2).sqrt()  # magnitude (K, 129, 4)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        x = x.squeeze(-1)  # (K, 128): the strided convs leave one step per chunk
        h = c = x.new_zeros(1, HIDDEN)
        hidden = []
        for k in range(n_chunks):  # the only sequential part: one LSTM step per chunk
            h, c = self.lstm_cell(x[k: k + 1], (h, c))
            hidden.append(h)
        out = self.final_conv(F.relu(torch.cat(hidden))[:, :, None])  # (K, 1, 1)
        return torch.sigmoid(out)[:, 0, 0]


def silero_weights_path() -> Path:
    """The weights file inside the installed ``silero-vad`` package; AssetError when it is missing.

    The package is located, not imported: importing it sets torch's global thread count to 1.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"the silero-vad package is not installed (needed by --states vad): {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_DIR / WEIGHTS_FILE
    if not path.is_file():
        raise AssetError(f"{path}: Silero VAD weights missing from the silero-vad package; reinstall it "
                         f"({INSTALL_HINT})")
    return path


def load_silero(path: str | Path | None = None) -> SileroVAD:
    """Load the Silero VAD weights (safetensors) from ``path`` or the installed package."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path) if path is not None else silero_weights_path()
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise AssetError(f"{path}: not a readable Silero VAD safetensors file ({err})") from None
    net = SileroVAD()
    expected = net.state_dict()
    if set(state) != set(expected) or any(state[k].shape != v.shape for k, v in expected.items()):
        raise AssetError(f"{path}: not the Silero VAD 16 kHz weight layout")
    net.load_state_dict(state)
    return net.eval()


@functools.lru_cache(maxsize=1)
def _default_silero() -> SileroVAD:
    return load_silero()


@torch.inference_mode()
def voice_probability(audio16k: np.ndarray, n_frames: int, net: SileroVAD | None = None) -> np.ndarray:
    """(N,) 16 kHz audio -> (n_frames,) float32 speech probability per 25 fps frame.

    Chunk k covers samples [512 k, 512 (k + 1)); its probability is placed at the chunk centre
    and linearly interpolated to each frame centre (i + 0.5) x 640 samples.
    """
    net = net if net is not None else _default_silero()
    wave = torch.as_tensor(np.asarray(audio16k, dtype=np.float32))
    if wave.numel() == 0:
        return np.zeros(n_frames, np.float32)
    probs = net(wave).double().numpy()  # (K,) at 31.25 Hz
    chunk_centres = (np.arange(len(probs)) + 0.5) * CHUNK
    frame_centres = (np.arange(n_frames) + 0.5) * SAMPLES_PER_FRAME
    return np.interp(frame_centres, chunk_centres, probs).astype(np.float32)


def mouth_gate(lip_gap_m: np.ndarray, fps: int = MOTION_FPS) -> np.ndarray:
    """(T,) inner-lip gap in metres -> (T,) gate in [0, 1]: 0 for a still mouth, 1 for a moving one."""
    gap = np.asarray(lip_gap_m, dtype=np.float64)
    window = max(1, round(MOUTH_WINDOW_S * fps))
    mean = moving_average(gap, window)
    std = np.sqrt(np.maximum(moving_average(gap**2, window) - mean**2, 0.0))
    return np.clip((std - MOUTH_STILL_M) / (MOUTH_MOVING_M - MOUTH_STILL_M), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class VadLabels:
    """Per-frame outputs at 25 fps: states (T,) int8 in {+1, -1}; score (T,) the smoothed speaking
    score in [0, 1] that was thresholded; voice (T,) Silero probability; gate (T,) mouth gate."""

    states: np.ndarray
    score: np.ndarray
    voice: np.ndarray
    gate: np.ndarray


def vad_states(audio16k: np.ndarray, n_frames: int, lip_gap_m: np.ndarray | None = None,
               net: SileroVAD | None = None) -> VadLabels:
    """Listening/speaking states of one clip from its audio and, when given, its (T,) lip gap (m)."""
    if audio16k.ndim != 1:
        raise ValueError(f"expected mono audio (N,), got shape {audio16k.shape}")
    voice = voice_probability(audio16k, n_frames, net)
    if lip_gap_m is None:
        gate = np.ones(n_frames, np.float32)
    else:
        if len(lip_gap_m) != n_frames:
            raise ValueError(f"lip gap has {len(lip_gap_m)} frames, the clip {n_frames}")
        gate = mouth_gate(lip_gap_m)
    states, score = scores_to_states(voice.astype(np.float64) * gate, logits=False)
    return VadLabels(states, score, voice, gate)

