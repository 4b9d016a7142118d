"""Ground-truth motion of the sample data: a deterministic function of the single-stream audio, the
per-frame states and a per-clip seed, on the built-in head (``ehead_cli.face.builtin``).

Everything the model must learn from the audio is local: a speaking frame's mouth depends only on
the audio within one frame of it, so the DiT, whose cross-attention sees +-2 frames, can read it.

Audio features (25 fps, frame t centred on sample 640 t + 320, a 1024-sample Hann window, i.e.
the frame and 12 ms either side):
  level     band energy 250-4000 Hz in dBFS (a full-scale sine reads -3 dB)
  centroid  spectral centroid 100-6000 Hz; low for rounded vowels (o, u), high for i, e, s

Speaking frames (state +1):
  openness  o = clip((level - LEVEL_CLOSED_DB) / (LEVEL_OPEN_DB - LEVEL_CLOSED_DB), 0, 1) ^ 1.5,
            centred 3-tap smoothing: each syllable's energy peak opens the jaw
  jaw       +x rotation (positive opens the built-in head's mouth) JAW_OPEN_RAD * o
  lips      EXPR_LIPS_PART follows o; EXPR_LIP_ROUND / EXPR_LIP_STRETCH from the centroid below or
            above CENTROID_MID_HZ, gated by the voiced level
  beats     stressed syllables (a level peak over +-2 frames, above STRESS_DB, at least
            BEAT_REFRACTORY frames after the previous beat) start a smooth causal nod, a head turn
            alternating left and right, and a brow raise
Listening frames (state -1): the mouth never follows the audio. The jaw closes over a few frames
after the avatar's last syllable, rests nearly closed and relaxes slowly towards RELAX_JAW_RAD (lips a
little apart), and opens slightly in the INHALE_FRAMES frames before the next turn (``listening_jaw``);
lip rounding and stretch are zero. When the interlocutor stops
(an audible frame followed by PAUSE_FRAMES quiet frames) a slow nod, at most one per
NOD_REFRACTORY frames. A smile rises while listening and relaxes while speaking.
Both states: blinks at pseudo-random times, gaze saccades and drift, slow head drift and
translation sway; rotation and translation (not the rest pose) scale with the clip's magnitude times
a speed profile (``speed_profile``: a factor drawn log-uniformly in SPEED_FACTOR for each segment of
SPEED_SEGMENT_S seconds, with SPEED_RAMP_FRAMES ramps between them), so the windows of one clip span
a wide range of head-motion speeds and the model's magnitude control has something to learn.

Ranges: jaw 0 to JAW_OPEN_RAD (0.18 rad), expression coefficients within [0, 1.2] (blink 1 closes
the eyes), head rotation a few degrees, translation a few millimetres.

Long module: one concept, the ground-truth function ``ground_truth_motion``; this docstring is its
specification and the named constants below are its parameters, so the tracks stay next to the
constants and the rules they implement (split, the specification would live in several files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ehead_cli.face.builtin import (
    EXPR_BLINK,
    EXPR_BROW_RAISE,
    EXPR_LIP_ROUND,
    EXPR_LIP_STRETCH,
    EXPR_LIPS_PART,
    EXPR_SMILE,
    N_NAMED_SHAPE,
    SHAPE_LIP_FULLNESS,
)
from ehead_cli.layout import (
    EXPR,
    EYE_LEFT,
    EYE_RIGHT,
    JAW,
    LISTEN,
    MOTION_DIM,
    MOTION_FPS,
    N_SHAPE,
    ROT,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SPEAK,
    TRANS,
    n_frames_for,
)

DEG = math.pi / 180.0
MM = 1e-3

# --- audio features ----------------------------------------------------------------------------
FEATURE_WINDOW = 1024  # samples (64 ms) centred on each motion frame's centre
LEVEL_BAND_HZ = (250.0, 4000.0)  # where speech energy (and the mouth's opening) lives
CENTROID_BAND_HZ = (100.0, 6000.0)
POWER_FLOOR = 1e-12  # -120 dBFS, keeps log10 finite in digital silence

# --- mouth ----------------------------------------------------------------------------------------
LEVEL_CLOSED_DB = -42.0  # at or below: mouth closed
LEVEL_OPEN_DB = -12.0  # at or above: fully open
OPEN_EXPONENT = 1.5  # > 1 makes syllable peaks stand out from the consonants between them
MOUTH_SMOOTHING = np.array([0.25, 0.5, 0.25])  # centred, +-1 frame
JAW_OPEN_RAD = 0.18  # jaw rotation at full openness (about 15 mm at the lower lip)
LIPS_PART_GAIN = 0.6  # EXPR_LIPS_PART per unit openness
CENTROID_MID_HZ = 850.0  # neither rounded nor stretched (about the median over voiced speech)
ROUND_OCTAVES = 1.0  # octaves below the middle for full rounding
STRETCH_OCTAVES = 0.6  # octaves above it for full stretch
LIP_ROUND_GAIN = 1.2
LIP_STRETCH_GAIN = 0.9
# the listening mouth: closed in the sense of "not talking", but a real face is not a still photo.
# It closes over a few frames after a turn, relaxes slowly (lips a little apart) the longer the
# avatar listens, and opens slightly just before its next turn (a breath). All three depend only on
# the states, never on the audio, so the interlocutor's voice never moves the mouth.
CLOSE_TAU = 2.0  # frames: the jaw's exponential closing after the avatar's last speaking frame
RELAX_JAW_RAD = 0.025  # the relaxed listening jaw (about 2 mm at the lower lip)
RELAX_TAU = 30.0  # frames to relax (1.2 s); a clip starts with the mouth fully closed
INHALE_FRAMES = 3  # listening frames before a turn over which the mouth opens for breath
INHALE_JAW_RAD = 0.04

# --- speaking beats ---------------------------------------------------------------------------------
STRESS_DB = -16.5  # level a syllable peak must exceed to count as stressed
STRESS_SPAN_DB = 6.0  # dB above STRESS_DB for a full-strength beat
PEAK_RADIUS = 2  # frames: a peak is the maximum over +-2 frames (what the model sees)
BEAT_REFRACTORY = 10  # frames between beats (400 ms)
BEAT_TAU = 3.0  # frames to the beat kernel's peak
BEAT_LENGTH = 18  # frames the kernel lasts
BEAT_NOD_DEG = 1.6  # pitch (chin down) at full strength
BEAT_TURN_DEG = 1.2  # yaw, alternating direction
BEAT_ROLL_DEG = 0.4
BEAT_BROW = 0.7  # EXPR_BROW_RAISE at full strength

# --- listening ---------------------------------------------------------------------------------------
AUDIBLE_DB = -52.0  # level above which a frame holds someone's voice (the noise floor is ~-80)
PAUSE_FRAMES = 3  # quiet frames after an audible one that make a pause (the frame and 2 ahead)
NOD_REFRACTORY = 40  # frames (1.6 s) between listening nods
NOD_LENGTH = 22  # frames (0.88 s): one slow down-and-up
NOD_DEG = 3.0
NOD_BROW = 0.25
SMILE_LISTEN = 0.35  # added to the clip's base smile while listening
SMILE_TAU = 12.0  # frames, the smile's exponential approach to its target

# --- both states ----------------------------------------------------------------------------------------
BLINK_PROFILE = np.array([0.4, 0.9, 1.0, 0.75, 0.4, 0.15])  # EXPR_BLINK over a blink's frames
BLINK_GAP_S = (1.5, 5.0)  # uniform spacing between blink starts
FIRST_BLINK_S = (0.2, 5.0)  # uniform time of the first blink
SACCADE_GAP_S = (0.6, 2.5)
GAZE_STD_RAD = (0.035, 0.07)  # pitch (x) and yaw (y) spread of gaze targets
GAZE_LIMIT_RAD = (0.09, 0.18)
SACCADE_FRAMES = 2  # frames an eye movement takes
GAZE_DRIFT = 0.3  # slow drift under the saccades, as a fraction of GAZE_STD_RAD
DRIFT_HZ = (0.04, 0.2)  # frequency range of the slow drifts
HEAD_DRIFT_DEG = np.array([1.2, 2.0, 0.8])  # pitch, yaw, roll amplitude
SWAY_MM = np.array([1.5, 1.0, 2.0])  # x, y, z amplitude
REST_POSE_DEG = np.array([2.0, 4.0, 1.5])  # per-clip constant head pose, uniform +-
SPEED_SEGMENT_S = (2.0, 6.0)  # uniform length of a segment of the head-motion speed profile
SPEED_FACTOR = (0.25, 3.0)  # log-uniform factor of each segment (x the clip's magnitude)
SPEED_RAMP_FRAMES = 12  # moving-average ramp between segments
SMILE_BASE = (0.0, 0.4)  # per-clip resting smile, uniform

# --- identity -------------------------------------------------------------------------------------------
SHAPE_NAMED_STD = 1.2  # the built-in head's named components: +-3 is a plausible other person
SHAPE_NAMED_LIMIT = 2.5
SHAPE_REST_STD = 0.4  # unnamed components, falling as 1/sqrt(index)
# the built-in head's fuller lips also move apart at the slit (a neutral face with parted lips), so
# identities keep the lips at most a little fuller than the template
LIP_FULLNESS_RANGE = (-1.5, 0.5)


@dataclass(frozen=True)
class AudioFeatures:
    """Per-frame audio features at 25 fps: ``level_db`` (T,) band energy in dBFS, ``centroid_hz`` (T,)."""

    level_db: np.ndarray
    centroid_hz: np.ndarray


def audio_features(wave: np.ndarray) -> AudioFeatures:
    """(N,) float 16 kHz -> features for T = ceil(N / 640) frames (the window centred on each frame)."""
    wave = np.asarray(wave, np.float64)
    T = n_frames_for(len(wave))
    before = FEATURE_WINDOW // 2 - SAMPLES_PER_FRAME // 2  # 192 samples before the frame's start
    padded = np.pad(wave, (before, T * SAMPLES_PER_FRAME - len(wave) + FEATURE_WINDOW))
    idx = np.arange(T)[:, None] * SAMPLES_PER_FRAME + np.arange(FEATURE_WINDOW)[None]  # (T, W)
    window = np.hanning(FEATURE_WINDOW)
    power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2  # (T, W/2 + 1)
    freqs = np.fft.rfftfreq(FEATURE_WINDOW, 1.0 / SAMPLE_RATE)
    # Parseval on a one-sided spectrum: mean power of the windowed band = 2 sum|X|^2 / (W sum w^2)
    band = (freqs >= LEVEL_BAND_HZ[0]) & (freqs <= LEVEL_BAND_HZ[1])
    mean_power = 2.0 * power[:, band].sum(1) / (FEATURE_WINDOW * (window**2).sum())
    level = 10.0 * np.log10(mean_power + POWER_FLOOR)
    cb = (freqs >= CENTROID_BAND_HZ[0]) & (freqs <= CENTROID_BAND_HZ[1])
    total = power[:, cb].sum(1)
    centroid = np.where(total > 0, (power[:, cb] * freqs[cb]).sum(1) / np.maximum(total, 1e-30), CENTROID_MID_HZ)
    return AudioFeatures(level, centroid)


def _smooth_centred(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Centred FIR smoothing of (T,) with edge replication (no lookahead beyond the kernel)."""
    r = len(kernel) // 2
    return np.convolve(np.pad(x, r, mode="edge"), kernel, mode="valid")


def openness(level_db: np.ndarray) -> np.ndarray:
    """(T,) level in dBFS -> (T,) mouth openness in [0, 1] (before the state gate)."""
    raw = np.clip((level_db - LEVEL_CLOSED_DB) / (LEVEL_OPEN_DB - LEVEL_CLOSED_DB), 0.0, 1.0) ** OPEN_EXPONENT
    return _smooth_centred(raw, MOUTH_SMOOTHING)


@dataclass(frozen=True)
class MouthTracks:
    """(T,) each: jaw opening (rad) and the lip coefficients; while the avatar listens only the
    state-driven jaw and lip parting of ``listening_jaw`` (rounding and stretch are zero)."""

    jaw: np.ndarray
    lips_part: np.ndarray
    lip_round: np.ndarray
    lip_stretch: np.ndarray


def listening_jaw(states: np.ndarray, speaking_jaw: np.ndarray) -> np.ndarray:
    """(T,) jaw opening (rad) of the listening frames from the states alone; 0 in speaking frames.

    After the avatar's last speaking frame e the jaw closes from its value there,
    j_e exp(-(t - e) / CLOSE_TAU), while relaxing towards RELAX_JAW_RAD (1 - exp(-(t - e) / RELAX_TAU));
    the larger of the two holds. A clip's start counts as e = -1 with j_e = 0. In the INHALE_FRAMES
    frames before a speaking onset the jaw ramps up to INHALE_JAW_RAD.
    """
    states = np.asarray(states)
    T = len(states)
    jaw = np.zeros(T)
    last_end, last_jaw = -1, 0.0
    for t in range(T):
        if states[t] == SPEAK:
            last_end, last_jaw = t, float(speaking_jaw[t])
            continue
        dt = t - last_end
        jaw[t] = max(last_jaw * math.exp(-dt / CLOSE_TAU), RELAX_JAW_RAD * (1.0 - math.exp(-dt / RELAX_TAU)))
    onsets = np.flatnonzero((states[1:] == SPEAK) & (states[:-1] != SPEAK)) + 1
    for o in onsets:
        for k in range(1, INHALE_FRAMES + 1):
            t = o - k
            if t >= 0 and states[t] != SPEAK:
                jaw[t] = max(jaw[t], INHALE_JAW_RAD * (INHALE_FRAMES + 1 - k) / (INHALE_FRAMES + 1))
    return jaw


def mouth_tracks(features: AudioFeatures, states: np.ndarray) -> MouthTracks:
    """The speaking mouth from the audio within +-1 frame; in listening frames a nearly closed mouth
    that depends on the states only (``listening_jaw``)."""
    speaking = np.asarray(states) == SPEAK
    o = openness(features.level_db)
    voiced = _smooth_centred(
        np.clip((features.level_db - LEVEL_CLOSED_DB) / (LEVEL_OPEN_DB - LEVEL_CLOSED_DB), 0.0, 1.0),
        MOUTH_SMOOTHING)
    octaves = _smooth_centred(np.log2(np.maximum(features.centroid_hz, 1.0) / CENTROID_MID_HZ), MOUTH_SMOOTHING)
    gate = speaking.astype(np.float64)
    jaw = gate * JAW_OPEN_RAD * o
    listen_jaw = listening_jaw(states, jaw)
    return MouthTracks(
        jaw=jaw + listen_jaw,
        lips_part=gate * LIPS_PART_GAIN * o + LIPS_PART_GAIN * listen_jaw / JAW_OPEN_RAD,
        lip_round=gate * LIP_ROUND_GAIN * np.clip(-octaves / ROUND_OCTAVES, 0.0, 1.0) * voiced,
        lip_stretch=gate * LIP_STRETCH_GAIN * np.clip(octaves / STRETCH_OCTAVES, 0.0, 1.0) * voiced,
    )


def _local_peaks(x: np.ndarray, radius: int) -> np.ndarray:
    """(T,) bool: x[t] is the first maximum of x over [t - radius, t + radius]."""
    padded = np.pad(x, radius, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)  # (T, 2r + 1)
    return windows.argmax(axis=1) == radius


def stress_beats(level_db: np.ndarray, states: np.ndarray) -> list[tuple[int, float]]:
    """(frame, strength in (0, 1]) of each stressed syllable in the avatar's speech."""
    speaking = np.asarray(states) == SPEAK
    candidates = np.flatnonzero(_local_peaks(level_db, PEAK_RADIUS) & speaking & (level_db > STRESS_DB))
    beats, last = [], -BEAT_REFRACTORY
    for t in candidates:
        if t - last >= BEAT_REFRACTORY:
            beats.append((int(t), float(min((level_db[t] - STRESS_DB) / STRESS_SPAN_DB, 1.0))))
            last = t
    return beats


def listening_nods(level_db: np.ndarray, states: np.ndarray) -> list[int]:
    """Frames where a listening nod starts: the interlocutor has just paused."""
    audible = level_db > AUDIBLE_DB
    listening = np.asarray(states) == LISTEN
    nods, last = [], -NOD_REFRACTORY
    for t in range(1, len(level_db) - PAUSE_FRAMES + 1):
        pause = audible[t - 1] and not audible[t: t + PAUSE_FRAMES].any()
        # both frames listening: the voice that stopped is the interlocutor's, not the avatar's
        if pause and listening[t - 1] and listening[t] and t - last >= NOD_REFRACTORY:
            nods.append(t)
            last = t
    return nods


def beat_kernel() -> np.ndarray:
    """(BEAT_LENGTH,) causal gamma-shaped bump, 0 at onset, peak 1 after BEAT_TAU frames."""
    n = np.arange(BEAT_LENGTH) / BEAT_TAU
    k = n * np.exp(1.0 - n)
    return k * np.hanning(2 * BEAT_LENGTH)[BEAT_LENGTH:] ** 0.25  # taper to exactly 0 at the end


def nod_kernel() -> np.ndarray:
    """(NOD_LENGTH,) slow down-and-up, sin^2, 0 at both ends, peak 1."""
    return np.sin(np.pi * np.arange(NOD_LENGTH) / (NOD_LENGTH - 1)) ** 2


def _place(T: int, onsets: list[int], weights: list[float], kernel: np.ndarray) -> np.ndarray:
    """(T,) sum of ``kernel`` scaled by each weight, starting at each onset (cut at T)."""
    out = np.zeros(T + len(kernel))
    for t, w in zip(onsets, weights, strict=True):
        out[t: t + len(kernel)] += w * kernel
    return out[:T]


def blink_track(T: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) EXPR_BLINK values: blinks at uniformly spaced random starts, each ``BLINK_PROFILE``."""
    starts, t = [], rng.uniform(*FIRST_BLINK_S) * MOTION_FPS
    while t < T:
        starts.append(int(t))
        t += rng.uniform(*BLINK_GAP_S) * MOTION_FPS
    return np.minimum(_place(T, starts, [1.0] * len(starts), BLINK_PROFILE), 1.0)


def gaze_track(T: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 2) eye rotation (pitch about x, yaw about y) in radians: saccades between held targets."""
    targets, times, t = [], [], 0.0
    while t < T:
        times.append(int(t))
        targets.append(np.clip(rng.normal(0.0, GAZE_STD_RAD), -np.asarray(GAZE_LIMIT_RAD), GAZE_LIMIT_RAD))
        t += rng.uniform(*SACCADE_GAP_S) * MOTION_FPS
    gaze = np.zeros((T, 2))
    for k, start in enumerate(times):
        stop = times[k + 1] if k + 1 < len(times) else T
        gaze[start:stop] = targets[k]
        if k:  # a fast linear move from the previous target
            ramp = np.arange(1, SACCADE_FRAMES + 1)[:, None] / (SACCADE_FRAMES + 1)
            span = gaze[start: min(start + SACCADE_FRAMES, stop)]
            span[:] = targets[k - 1] + ramp[: len(span)] * (targets[k] - targets[k - 1])
    return gaze + drift(T, rng, GAZE_DRIFT * np.asarray(GAZE_STD_RAD))


def drift(T: int, rng: np.random.Generator, amplitude: np.ndarray) -> np.ndarray:
    """(T, D) slow smooth wander: per channel two sinusoids at random DRIFT_HZ frequencies and
    phases, peak at most ``amplitude`` (D,)."""
    amplitude = np.asarray(amplitude, np.float64)
    D = amplitude.shape[0]
    freq = rng.uniform(*DRIFT_HZ, size=(2, D))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(2, D))
    seconds = np.arange(T)[:, None, None] / MOTION_FPS  # (T, 1, 1)
    waves = np.sin(2.0 * np.pi * freq * seconds + phase).sum(1) / 2.0  # (T, D) in [-1, 1]
    return waves * amplitude


def speed_profile(T: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) head-motion speed factor: piecewise constant over segments of SPEED_SEGMENT_S seconds,
    each drawn log-uniformly in SPEED_FACTOR, joined by SPEED_RAMP_FRAMES-frame ramps."""
    out = np.empty(T)
    t = 0
    lo, hi = np.log(SPEED_FACTOR)
    while t < T:
        n = max(1, int(round(rng.uniform(*SPEED_SEGMENT_S) * MOTION_FPS)))
        out[t:t + n] = np.exp(rng.uniform(lo, hi))
        t += n
    if T > 1:
        k = SPEED_RAMP_FRAMES
        padded = np.pad(out, (k // 2, k - 1 - k // 2), mode="edge")
        out = np.convolve(padded, np.ones(k) / k, mode="valid")
    return out


def smile_track(states: np.ndarray, base: float) -> np.ndarray:
    """(T,) EXPR_SMILE: approaches ``base`` (+ SMILE_LISTEN while listening) exponentially."""
    target = base + SMILE_LISTEN * (np.asarray(states) == LISTEN)
    out = np.empty(len(target))
    alpha = 1.0 - math.exp(-1.0 / SMILE_TAU)
    level = target[0] if len(target) else base
    for t, goal in enumerate(target):
        level += alpha * (goal - level)
        out[t] = level
    return out


def ground_truth_motion(wave: np.ndarray, states: np.ndarray, seed: int, magnitude: float = 1.0) -> np.ndarray:
    """(N,) 16 kHz single-stream audio, (T,) states (T = ceil(N / 640)), the clip's seed and motion
    magnitude (scales head rotation and translation, with the speed profile) -> (T, 115) float32 motion."""
    states = np.asarray(states)
    T = n_frames_for(len(wave))
    if states.shape != (T,):
        raise ValueError(f"states must have shape ({T},) for {len(wave)} samples, got {states.shape}")
    if not np.isin(states, (SPEAK, LISTEN)).all():
        raise ValueError("states must hold only +1 (speak) and -1 (listen)")
    rng = np.random.default_rng(seed)
    feats = audio_features(wave)
    mouth = mouth_tracks(feats, states)
    motion = np.zeros((T, MOTION_DIM))
    expr = motion[:, EXPR]
    motion[:, JAW.start] = mouth.jaw  # +x opens the mouth
    expr[:, EXPR_LIPS_PART] = mouth.lips_part
    expr[:, EXPR_LIP_ROUND] = mouth.lip_round
    expr[:, EXPR_LIP_STRETCH] = mouth.lip_stretch

    beats = stress_beats(feats.level_db, states)
    onsets = [t for t, _ in beats]
    strength = [s for _, s in beats]
    turn = [s * (1.0 if k % 2 == 0 else -1.0) for k, s in enumerate(strength)]  # alternate left / right
    nods = listening_nods(feats.level_db, states)
    speak_beat = _place(T, onsets, strength, beat_kernel())
    speak_turn = _place(T, onsets, turn, beat_kernel())
    listen_nod = _place(T, nods, [1.0] * len(nods), nod_kernel())
    expr[:, EXPR_BROW_RAISE] = BEAT_BROW * speak_beat + NOD_BROW * listen_nod
    expr[:, EXPR_BLINK] = blink_track(T, rng)
    expr[:, EXPR_SMILE] = smile_track(states, rng.uniform(*SMILE_BASE))

    gaze = gaze_track(T, rng)
    motion[:, EYE_LEFT.start: EYE_LEFT.start + 2] = gaze
    motion[:, EYE_RIGHT.start: EYE_RIGHT.start + 2] = gaze

    rest = rng.uniform(-1.0, 1.0, 3) * REST_POSE_DEG * DEG
    head = drift(T, rng, HEAD_DRIFT_DEG * DEG)  # (T, 3) pitch, yaw, roll
    head[:, 0] += BEAT_NOD_DEG * DEG * speak_beat + NOD_DEG * DEG * listen_nod  # +x: chin down
    head[:, 1] += BEAT_TURN_DEG * DEG * speak_turn
    head[:, 2] += BEAT_ROLL_DEG * DEG * speak_turn
    sway = drift(T, rng, SWAY_MM * MM)
    speed = magnitude * speed_profile(T, rng)[:, None]  # drawn last: the other tracks do not depend on it
    motion[:, ROT] = rest + speed * head  # small angles: (pitch, yaw, roll) is the axis-angle
    motion[:, TRANS] = speed * sway
    return motion.astype(np.float32)


def identity_shape(seed: int) -> np.ndarray:
    """(300,) float32 plausible identity: the named components ~N(0, 1.2^2) clipped to +-2.5 (lip
    fullness to ``LIP_FULLNESS_RANGE``), the rest ~N(0, (0.4 sqrt(14 / k))^2) for component k."""
    rng = np.random.default_rng(seed)
    shape = np.zeros(N_SHAPE)
    shape[:N_NAMED_SHAPE] = np.clip(rng.normal(0.0, SHAPE_NAMED_STD, N_NAMED_SHAPE),
                                    -SHAPE_NAMED_LIMIT, SHAPE_NAMED_LIMIT)
    k = np.arange(N_NAMED_SHAPE, N_SHAPE)
    shape[N_NAMED_SHAPE:] = rng.normal(0.0, 1.0, len(k)) * SHAPE_REST_STD * np.sqrt(N_NAMED_SHAPE / k)
    shape[SHAPE_LIP_FULLNESS] = np.clip(shape[SHAPE_LIP_FULLNESS], *LIP_FULLNESS_RANGE)
    return shape.astype(np.float32)
