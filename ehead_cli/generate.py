"""Causal windowed generation: audio + LS states -> FLAME-layout motion, batched across jobs.

A clip of N frames is generated in windows of T = 100 frames, in order. Window k:

* audio: the samples of frames [kT, (k + 1)T) only, encoded on their own (no window sees audio past
  its own end; the last, partial window is padded with silence);
* states: the frames' LS states; frames past the end of the clip are listening (silence, nobody
  speaks), and their generated motion is dropped;
* history: the previous 75 generated frames, normalised; before the first frame the history is
  padded with the reference frame in the listening state (the training padding rule,
  ehead_cli.data); the normalised reference is clipped to +-REFERENCE_CLIP standard deviations of
  the training set, so a reference from other data (a tracked real person on a model trained on
  synthetic motion, whose unused dimensions have the floor std 1e-3) stays in the range the model
  knows instead of sending it thousands of deviations away;
* noise: x0 ~ N(0, I) from a generator seeded by (seed, k), so a job's result does not depend on
  which other jobs share its batch;
* sampling: N Euler steps (default 4) of the rectified flow from t = 0 to 1, the per-window
  condition (packed history, FiLM-modulated audio keys/values, reference/audio/magnitude
  embeddings) computed once and reused by every step.

Windows of all jobs at the same index run through the network together (the main speed lever on a
GPU). ``Generator.generate`` returns a ``Motion`` and writes nothing; ``StreamingSession`` takes audio
chunks with their source and yields frames as soon as a window is ready, and equals the offline path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ehead_cli.checkpoint import load_checkpoint
from ehead_cli.config import models_dir
from ehead_cli.devices import autocast_dtype, resolve_device
from ehead_cli.errors import ConfigError, InputError
from ehead_cli.flow import euler_sample, time_grid
from ehead_cli.layout import LISTEN, MOTION_DIM, MOTION_FPS, N_SHAPE, N_SHAPE_REF, SAMPLES_PER_FRAME, n_frames_for
from ehead_cli.model import EmbodiedHead
from ehead_cli.motionfile import Motion, check_head_centred, load_motion
from ehead_cli.scheduler import StreamingAudioScheduler
from ehead_cli.stats import DEFAULT_MAGNITUDE

DEFAULT_CHECKPOINT = "ehead-small-mel"  # under models/: the shipped demo checkpoint
DEFAULT_STEPS = 4
REFERENCE_CLIP = 3.0  # standard deviations; see the module docstring


def default_checkpoint() -> Path:
    return models_dir() / DEFAULT_CHECKPOINT


@dataclass
class Avatar:
    """Who is animated: shape (300,) and an optional raw reference motion frame (115,).

    Without a reference the dataset's mean frame (the model's normalised zero) is used. ``camera``:
    the video camera of a prepared clip (renders are framed from it); ``renderer``: the neural
    renderer of an avatar folder (``ehead avatar fit``); ``face_model``: the face model it needs.
    """

    shape: np.ndarray = field(default_factory=lambda: np.zeros(N_SHAPE, np.float32))
    reference: np.ndarray | None = None
    camera: object | None = None
    renderer: object | None = None
    face_model: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             flame: str | os.PathLike | None = None) -> Avatar:
        """A shape file (.npy with (300,), or .npz with 'shape'), a motion NPZ (its shape and
        first frame become the reference; it must be head-centred) or an avatar folder
        (``ehead avatar fit``; its renderer runs on ``device``, with FLAME from ``flame`` if it needs it)."""
        path = Path(path)
        if path.is_dir():
            from ehead_cli.avatar.folder import load_avatar

            return load_avatar(path, device=device, flame=flame).as_generation_avatar()
        if not path.is_file():
            raise InputError(f"{path}: avatar file not found (--avatar)")
        try:
            if path.suffix == ".npy":
                shape = np.load(path, allow_pickle=False)
                return cls(_check_shape(shape, path))
            with np.load(path, allow_pickle=False) as z:
                if "motion" not in z.files:
                    if "shape" not in z.files:
                        raise InputError(f"{path}: an avatar .npz needs a 'shape' array (or be a motion NPZ)")
                    return cls(_check_shape(z["shape"], path))
            m = load_motion(path)  # a motion NPZ, validated as one
            check_head_centred(m.motion, str(path))
            return cls(m.shape, m.motion[0].copy(), camera=m.camera)
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: unreadable avatar file ({err})") from None


def _check_shape(shape: np.ndarray, path: Path) -> np.ndarray:
    shape = np.asarray(shape, np.float32).reshape(-1)
    if shape.shape != (N_SHAPE,) or not np.isfinite(shape).all():
        raise InputError(f"{path}: shape must be {N_SHAPE} finite numbers, got {shape.shape}")
    return shape


@dataclass
class _Job:
    """Book-keeping of one clip during generation."""

    audio: np.ndarray  # (N,) 16 kHz
    states: np.ndarray  # (n_frames,) int8
    avatar: Avatar
    seed: int
    magnitude: tuple[float, float]
    n_frames: int
    ref: torch.Tensor  # (115,) normalised reference frame
    hist: torch.Tensor  # (L, 115) normalised history, newest last
    hist_states: torch.Tensor  # (L,)
    out: list[torch.Tensor] = field(default_factory=list)  # generated normalised windows
    first_window: int = 0  # index of the window that ``audio``/``states`` start at (streaming keeps one)


class Generator:
    """Audio + states -> motion with a trained model. ``steps``: Euler steps (1-25, default 4);
    ``magnitude``: [m_r, m_t] in [0, 1] (default 0.3, 0.3); ``batch_size``: windows per forward."""

    def __init__(self, model: EmbodiedHead, device: str | torch.device = "cpu", steps: int = DEFAULT_STEPS,
                 magnitude: tuple[float, float] = DEFAULT_MAGNITUDE, batch_size: int = 64,
                 dtype: torch.dtype | None = None):
        time_grid(steps)  # validates the range
        if len(magnitude) != 2 or not all(0.0 <= m <= 1.0 for m in magnitude):
            raise ConfigError(f"--magnitude takes two values in [0, 1], got {tuple(magnitude)}")
        if batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.steps, self.magnitude, self.batch_size = steps, tuple(float(m) for m in magnitude), batch_size
        self.dtype = dtype or autocast_dtype(self.device)
        self.compiled = False

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike | None = None, device: str | None = None,
                        hubert_path: str | os.PathLike | None = None, **kwargs) -> Generator:
        dev = resolve_device(device)
        path = Path(checkpoint) if checkpoint else default_checkpoint()
        if checkpoint is None:
            if not (path / "config.json").is_file():
                raise InputError(f"the demo checkpoint {path} is missing; pass --checkpoint RUN_DIR/checkpoint")
            from ehead_cli.manifest import verify_files

            verify_files(models_dir(), path)
        return cls(load_checkpoint(path, hubert_path=hubert_path, device=dev), dev, **kwargs)

    # --- public API ---------------------------------------------------------------------------
    def generate(self, audio: np.ndarray, states: np.ndarray, avatar: Avatar | None = None, seed: int = 0,
                 magnitude: tuple[float, float] | None = None) -> Motion:
        """(N,) 16 kHz audio and (ceil(N / 640),) states -> Motion (motion (T, 115), shape, states)."""
        return self.generate_many([(audio, states, avatar, seed)], magnitude=magnitude)[0]

    def generate_many(self, jobs: list[tuple[np.ndarray, np.ndarray, Avatar | None, int]],
                      magnitude: tuple[float, float] | None = None,
                      on_window: Callable[[int], None] | None = None) -> list[Motion]:
        """Generate several clips, batching their windows. ``on_window(n)`` reports progress."""
        prepared = [self._prepare(a, s, av, seed, magnitude or self.magnitude) for a, s, av, seed in jobs]
        for k in range(max((self.n_windows(j.n_frames) for j in prepared), default=0)):
            active = [j for j in prepared if k < self.n_windows(j.n_frames)]
            for i in range(0, len(active), self.batch_size):
                chunk = active[i:i + self.batch_size]
                self._step(chunk, k)
                if on_window:
                    on_window(len(chunk))
        return [self._finish(j) for j in prepared]

    def n_windows(self, n_frames: int) -> int:
        """Windows that cover ``n_frames`` frames (the last one padded)."""
        return -(-n_frames // self.cfg.window)

    def stream(self, avatar: Avatar | None = None, seed: int = 0) -> StreamingSession:
        return StreamingSession(self, avatar, seed)

    def compile(self, mode: str | None = None) -> Generator:
        """``torch.compile`` the audio encoder and the whole sampler of a window (its condition and
        every Euler step, unrolled). ``mode`` defaults to "reduce-overhead" on CUDA, which also
        captures each as one CUDA graph (two graph launches per window), and "default" elsewhere.
        Each new batch size or step count compiles once more. Returns self."""
        if self.compiled:
            return self
        mode = mode or ("reduce-overhead" if self.device.type == "cuda" else "default")
        self._encode = torch.compile(self._encode, dynamic=False, mode=mode)
        self._sample = torch.compile(self._sample, dynamic=False, mode=mode)
        self.compiled = True
        return self

    # --- internals -------------------------------------------------------------------------------
    def _prepare(self, audio, states, avatar, seed, magnitude) -> _Job:
        audio = np.asarray(audio, np.float32).reshape(-1)
        n = n_frames_for(len(audio))
        states = np.asarray(states, np.int8).reshape(-1)
        if len(states) != n:
            raise InputError(f"states have {len(states)} frames but the audio has {n} (ceil(duration x 25))")
        avatar = avatar or Avatar()
        stats = self.model.stats
        ref = (torch.zeros(MOTION_DIM) if avatar.reference is None
               else stats.normalize(torch.as_tensor(avatar.reference, dtype=torch.float32))
               .clamp(-REFERENCE_CLIP, REFERENCE_CLIP))
        L = self.cfg.history_frames
        return _Job(audio, states, avatar, int(seed), tuple(magnitude), n, ref,
                    ref.expand(L, MOTION_DIM).clone(), torch.full((L,), float(LISTEN)))

    def _noise(self, job: _Job, k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([job.seed, k]).generate_state(1)[0]))
        return torch.randn(self.cfg.window, MOTION_DIM, generator=g)

    def window_batch(self, jobs: list[_Job], k: int) -> dict[str, torch.Tensor]:
        """The inputs of window k of every job, on the generator's device:
        wave (B, 640 T), states (B, T), history (B, L, 115), history_states (B, L), shape (B, 100),
        ref (B, 115), magnitude (B, 2), x0 (B, T, 115)."""
        T, dev = self.cfg.window, self.device
        n = T * SAMPLES_PER_FRAME
        waves, states = [], []
        for j in jobs:
            w = np.zeros(n, np.float32)
            local = k - j.first_window
            seg = j.audio[local * n:(local + 1) * n]
            w[: len(seg)] = seg
            q = np.full(T, LISTEN, np.float32)  # frames past the end: silence, listening
            qs = j.states[local * T:(local + 1) * T]
            q[: len(qs)] = qs
            waves.append(w)
            states.append(q)
        batch = {
            "wave": torch.from_numpy(np.stack(waves)),
            "states": torch.from_numpy(np.stack(states)),
            "history": torch.stack([j.hist for j in jobs]),
            "history_states": torch.stack([j.hist_states for j in jobs]),
            "shape": torch.from_numpy(np.stack([j.avatar.shape[:N_SHAPE_REF] for j in jobs])).float(),
            "ref": torch.stack([j.ref for j in jobs]),
            "magnitude": torch.tensor([j.magnitude for j in jobs], dtype=torch.float32),
            "x0": torch.stack([self._noise(j, k) for j in jobs]),
        }
        return {key: v.to(dev) for key, v in batch.items()}

    @torch.inference_mode()
    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, 640 T) window audio -> (B, N_l, 2T, C) hidden stack (each window on its own)."""
        with self._autocast():
            return self._run(self._encode, wave)

    @torch.inference_mode()
    def sample_windows(self, audio: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Euler-sample a batch of windows from their encoded audio; returns (B, T, 115) normalised."""
        with self._autocast():
            return self._run(self._sample, audio, b, self.steps)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _encode(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model.audio_stack(self.model.encoder.frontend(wave))

    def _sample(self, audio: torch.Tensor, b: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
        """The whole sampler of one batch of windows: the per-window condition once, then the Euler steps."""
        dit = self.model.dit
        cond = dit.condition(audio, b["states"], b["history"], b["history_states"], b["shape"], b["ref"],
                             b["magnitude"])
        x = euler_sample(lambda x, t: dit.velocity(x, t, cond).to(x.dtype), b["x0"], steps)
        return x.float()

    def _run(self, fn: Callable[..., torch.Tensor], *args) -> torch.Tensor:
        """``fn(*args)``; compiled, its output is copied out of the CUDA graphs' memory pool (the next
        replay overwrites it), and each call starts a new CUDA-graph generation explicitly, rather than
        by the heuristics that reject one graph's output feeding another (pytorch#160281)."""
        if not self.compiled:
            return fn(*args)
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        return fn(*args).clone()

    def _step(self, jobs: list[_Job], k: int) -> None:
        """Generate window k of every job in ``jobs`` (one batch) and extend their histories."""
        b = self.window_batch(jobs, k)
        x = self.sample_windows(self.encode_audio(b["wave"]), b).cpu()
        states = b["states"].cpu()
        L = self.cfg.history_frames
        for i, j in enumerate(jobs):
            j.out.append(x[i])
            j.hist = torch.cat([j.hist, x[i]])[-L:]
            j.hist_states = torch.cat([j.hist_states, states[i]])[-L:]

    def _finish(self, job: _Job) -> Motion:
        norm = torch.cat(job.out)[: job.n_frames] if job.out else torch.zeros(0, MOTION_DIM)
        motion = self.model.stats.denormalize(norm).numpy()
        return Motion(motion, job.avatar.shape, job.states, MOTION_FPS)


class StreamingSession:
    """Live use: push microphone and agent audio as it arrives; get motion frames window by window.

    The session clock is the microphone: each time it has delivered another T frames, the
    Streaming Audio Scheduler (Algorithm 1) forms a window from the agent audio pushed so far and
    the most recent microphone audio, and the window's T frames are generated and returned. The
    single-stream audio and states of every window are kept (``audio``, ``states``), so the result
    equals ``Generator.generate(session.audio, session.states)`` exactly (the parity test).
    """

    def __init__(self, generator: Generator, avatar: Avatar | None = None, seed: int = 0):
        self.gen, self.T = generator, generator.cfg.window
        self.scheduler = StreamingAudioScheduler(self.T)
        self.job = generator._prepare(np.zeros(0, np.float32), np.zeros(0, np.int8), avatar, seed, generator.magnitude)
        self._mic_samples = 0  # microphone samples delivered
        self._audio: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        self.k = 0

    def push(self, samples: np.ndarray, source: str, end_of_utterance: bool = False) -> list[np.ndarray]:
        """Feed 16 kHz samples from ``source`` ("mic" or "agent"). Returns the motion windows
        ((T, 115) raw frames each) that became ready, possibly none."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if source == "agent":
            self.scheduler.push_speaking(samples, flush=end_of_utterance)
            return []
        if source != "mic":
            raise ValueError(f"source must be 'mic' or 'agent', got {source!r}")
        out = []
        start = 0
        while start < len(samples):  # deliver the mic in pieces that end exactly on tick times
            tick_at = (self.k + 1) * self.T * SAMPLES_PER_FRAME
            piece = samples[start:start + tick_at - self._mic_samples]
            self.scheduler.push_listening(piece)
            self._mic_samples += len(piece)
            start += len(piece)
            if self._mic_samples >= tick_at:
                out.append(self._tick())
        return out

    def _tick(self) -> np.ndarray:
        tick = self.scheduler.tick()
        self._audio.append(tick.audio)
        self._states.append(tick.states)
        j = self.job  # holds only this window: a long session never re-copies its past
        j.audio, j.states, j.first_window = tick.audio, tick.states, self.k
        self.gen._step([j], self.k)
        self.k += 1
        return self.gen.model.stats.denormalize(j.out.pop()).numpy()

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

    @property
    def states(self) -> np.ndarray:
        return np.concatenate(self._states) if self._states else np.zeros(0, np.int8)
