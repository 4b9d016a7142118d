"""The 13-dim MFCC that TalkNet-ASD was trained on, re-derived in numpy.

TalkNet-ASD computes ``python_speech_features.mfcc(audio, 16000, numcep=13, winlen=0.025,
winstep=0.010)`` on int16 samples read by ``scipy.io.wavfile``. With that library's defaults
this is, per 25 ms frame every 10 ms (100 Hz):

    pre-emphasis y[n] = x[n] - 0.97 x[n-1]  ->  rectangular 400-sample frames, zero-padded at
    the end  ->  power spectrum |rfft(frame, 512)|^2 / 512  ->  26 triangular mel filters
    (0-8 kHz, bin edges floor((nfft + 1) * hz / sr))  ->  log  ->  orthonormal DCT-II, first 13
    ->  sinusoidal lifter 1 + 11 sin(pi n / 22)  ->  c0 replaced by the log frame energy.

Only c0 depends on the amplitude scale; we keep the int16 scale the network was trained on.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ehead_cli.layout import SAMPLE_RATE
from ehead_cli.model.encoders import hz_to_mel, mel_to_hz

WIN_SAMPLES = SAMPLE_RATE * 25 // 1000  # 400 samples = 25 ms window
HOP_SAMPLES = SAMPLE_RATE * 10 // 1000  # 160 samples = 10 ms hop -> 100 Hz frames
MFCC_RATE = SAMPLE_RATE // HOP_SAMPLES  # 100 frames per second
N_FFT = 512  # smallest power of two >= the window, as python_speech_features picks
N_FILTERS = 26
N_CEPS = 13
PREEMPHASIS = 0.97
CEP_LIFTER = 22
INT16_SCALE = 32768.0  # float audio in [-1, 1] -> the int16 units TalkNet saw
_EPS = np.finfo(np.float64).eps  # floor before log, as the reference does for exact zeros


def mel_filterbank(n_filters: int = N_FILTERS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                   ) -> np.ndarray:
    """(n_filters, n_fft // 2 + 1) triangular filters on integer FFT-bin edges (0 Hz to Nyquist).

    Each filter rises linearly from 0 at its left edge to 1 at its centre bin and falls to 0 at
    its right edge; the right-edge bin itself gets 0, like the reference implementation.
    """
    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_filters + 2)
    edges = np.floor((n_fft + 1) * mel_to_hz(mels) / sample_rate)
    bins = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        fall = np.where((bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0)
    return rise + fall


def n_mfcc_frames(n_samples: int) -> int:
    """Frames the reference framing yields: one frame up to 400 samples, then one per started hop."""
    if n_samples <= WIN_SAMPLES:
        return 1
    return 1 + math.ceil((n_samples - WIN_SAMPLES) / HOP_SAMPLES)


def talknet_mfcc(audio: np.ndarray) -> np.ndarray:
    """(N,) 16 kHz mono audio -> (n_mfcc_frames(N), 13) float32 MFCC at 100 Hz.

    Float input is taken as [-1, 1] and scaled to int16 units; integer input is used as is.
    """
    x = np.asarray(audio)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono signal (N,), got shape {x.shape}")
    x = x.astype(np.float64) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float64) * INT16_SCALE

    x = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    n_frames = n_mfcc_frames(x.size)
    padded = np.zeros((n_frames - 1) * HOP_SAMPLES + WIN_SAMPLES)
    padded[: x.size] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, WIN_SAMPLES)[::HOP_SAMPLES]  # (F, 400)

    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2 / N_FFT  # (F, 257)
    energy = power.sum(1)
    energy = np.where(energy == 0, _EPS, energy)
    fbank = power @ mel_filterbank().T  # (F, 26)
    fbank = np.where(fbank == 0, _EPS, fbank)

    ceps = scipy.fft.dct(np.log(fbank), type=2, axis=1, norm="ortho")[:, :N_CEPS]
    n = np.arange(N_CEPS)
    ceps = ceps * (1.0 + (CEP_LIFTER / 2.0) * np.sin(np.pi * n / CEP_LIFTER))
    ceps[:, 0] = np.log(energy)
    return ceps.astype(np.float32)
