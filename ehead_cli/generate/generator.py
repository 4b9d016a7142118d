"""Causal windowed generation: audio + LS states -> FLAME-layout motion, batched across jobs.

A clip of N frames is generated in windows of T = 100 frames, in order. Window k:

* audio: the samples of frames [kT, (k + 1)T) only, encoded on their own (no window sees audio past
  its own end; the last, partial window is padded with silence);
* states: the frames' LS states; frames past the end of the clip are listening (silence, nobody
  speaks), and their generated motion is dropped;
* history: the previous 75 generated frames, normalised; before the first frame the history is
  padded with the reference frame in the listening state (the history padding rule of
  ``ehead_cli.model.windows``, which training uses too); the normalised reference is clipped to
  +-REFERENCE_CLIP standard deviations of the training set, so a reference from other data (a tracked
  real person on a model trained on synthetic motion, whose unused dimensions have the floor std 1e-3)
  stays in the range the model knows instead of sending it thousands of deviations away;
* noise: x0 ~ N(0, I) from a generator seeded by (seed, k), so a job's result does not depend on
  which other jobs share its batch;
* sampling: N Euler steps (default 4) of the rectified flow from t = 0 to 1, the per-window
  condition (packed history, FiLM-modulated audio keys/values, reference/audio/magnitude
  embeddings) computed once and reused by every step.

Windows of all jobs at the same index run through the network together (the main speed lever on a
GPU). ``Generator.generate`` returns a ``Motion`` and writes nothing. The per-window API is public:
``begin`` validates a clip and starts its ``Job``, ``step`` generates window k of a batch of jobs and
extends their histories, ``finish`` returns a job's ``Motion``; the live session
(``ehead_cli.generate.streaming``) and the benchmark drive it window by window.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ehead_cli import checks
from ehead_cli.avatar.identity import Avatar
from ehead_cli.devices import autocast_dtype, resolve_device
from ehead_cli.errors import InputError
from ehead_cli.generate.streaming import StreamingSession
from ehead_cli.io.motionfile import Motion
from ehead_cli.layout import MOTION_DIM, MOTION_FPS, N_SHAPE_REF, n_frames_for
from ehead_cli.model.checkpoint import load_checkpoint
from ehead_cli.model.config import models_dir
from ehead_cli.model.flow import euler_sample
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.model.stats import DEFAULT_MAGNITUDE
from ehead_cli.model.windows import WindowBatch, initial_history, window_audio, window_states

DEFAULT_CHECKPOINT = "ehead-small-mel"  # under models/: the shipped demo checkpoint
DEFAULT_STEPS = 4
REFERENCE_CLIP = 3.0  # standard deviations; see the module docstring


def default_checkpoint() -> Path:
    return models_dir() / DEFAULT_CHECKPOINT


@dataclass
class Job:
    """One clip during generation (``Generator.begin``): its inputs, history and generated windows.

    ``first_window``: the window index ``audio``/``states`` start at (the live session keeps only
    the current window's); ``keep``: append each generated window to ``out`` (the live session
    takes them from ``step`` instead)."""

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
    first_window: int = 0
    keep: bool = True


class Generator:
    """Audio + states -> motion with a trained model. ``steps``: Euler steps (1-25, default 4);
    ``magnitude``: [m_r, m_t] in [0, 1] (default 0.3, 0.3); ``batch_size``: windows per forward."""

    def __init__(self, model: EmbodiedHead, device: str | torch.device = "cpu", steps: int = DEFAULT_STEPS,
                 magnitude: tuple[float, float] = DEFAULT_MAGNITUDE, batch_size: int = 64,
                 dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.steps, self.magnitude = checks.steps(steps), checks.magnitude(magnitude)
        self.batch_size = checks.positive(batch_size, "--batch-size")
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
            from ehead_cli.io.manifest import verify_files

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
        started = [self.begin(a, s, av, seed, magnitude) for a, s, av, seed in jobs]
        for k in range(max((self.n_windows(j.n_frames) for j in started), default=0)):
            active = [j for j in started if k < self.n_windows(j.n_frames)]
            for i in range(0, len(active), self.batch_size):
                chunk = active[i:i + self.batch_size]
                self.step(chunk, k)
                if on_window:
                    on_window(len(chunk))
        return [self.finish(j) for j in started]

    def n_windows(self, n_frames: int) -> int:
        """Windows that cover ``n_frames`` frames (the last one padded)."""
        return -(-n_frames // self.cfg.window)

    def stream(self, avatar: Avatar | None = None, seed: int = 0, record: bool = True, hop: int | None = None,
               lookahead: int | None = None, **options) -> StreamingSession:
        """A live ``StreamingSession`` (``ehead_cli.generate.streaming``) on this generator: a window
        every ``hop`` frames (1..T, default T), ``lookahead`` frames of right context (0..T - hop,
        default 0); ``record`` keeps the audio and states of every frame sent (False: only the
        current window); ``options``: the session's others (``blend``)."""
        return StreamingSession(self, avatar, seed, record, hop=hop, lookahead=lookahead, **options)

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

    # --- the per-window API ----------------------------------------------------------------------
    def begin(self, audio: np.ndarray, states: np.ndarray, avatar: Avatar | None = None, seed: int = 0,
              magnitude: tuple[float, float] | None = None) -> Job:
        """Validate one clip's (N,) 16 kHz audio and (ceil(N / 640),) states and start its job: the
        reference frame and the padded history of its first window."""
        audio = checks.audio_array(audio)
        states = checks.states_array(states, n_frames_for(len(audio)))
        magnitude = self.magnitude if magnitude is None else checks.magnitude(magnitude)
        avatar = avatar or Avatar()
        ref = (torch.zeros(MOTION_DIM) if avatar.reference is None
               else self.model.stats.normalize(torch.as_tensor(avatar.reference, dtype=torch.float32))
               .clamp(-REFERENCE_CLIP, REFERENCE_CLIP))
        hist, hist_states = initial_history(ref, self.cfg.history_frames)
        return Job(audio, states, avatar, int(seed), magnitude, len(states), ref, hist, hist_states)

    def _noise(self, job: Job, k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([job.seed, k]).generate_state(1)[0]))
        return torch.randn(self.cfg.window, MOTION_DIM, generator=g)

    def window_batch(self, jobs: list[Job], k: int | Sequence[int]) -> WindowBatch:
        """The inputs of window k of every job, on the generator's device (the window contract of
        ``ehead_cli.model.windows``: frames past a clip's end are silence and listening). ``k`` may
        be one index per job (live sessions at different points of their conversations)."""
        T = self.cfg.window
        ks = [k] * len(jobs) if isinstance(k, (int, np.integer)) else [int(i) for i in k]
        if len(ks) != len(jobs):
            raise ValueError(f"{len(jobs)} jobs but {len(ks)} window indices")
        waves, states = [], []
        for j, kj in zip(jobs, ks, strict=True):
            local = (kj - j.first_window) * T
            waves.append(window_audio(j.audio, local, T))
            states.append(window_states(j.states, local, T)[0])
        batch = WindowBatch(
            states=torch.from_numpy(np.stack(states)),
            history=torch.stack([j.hist for j in jobs]),
            history_states=torch.stack([j.hist_states for j in jobs]),
            shape=torch.from_numpy(np.stack([j.avatar.shape[:N_SHAPE_REF] for j in jobs])).float(),
            ref=torch.stack([j.ref for j in jobs]),
            magnitude=torch.tensor([j.magnitude for j in jobs], dtype=torch.float32),
            x0=torch.stack([self._noise(j, kj) for j, kj in zip(jobs, ks, strict=True)]),
            wave=torch.from_numpy(np.stack(waves)),
        )
        return batch.to(self.device)

    @torch.inference_mode()
    def encode_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, 640 T) window audio -> (B, N_l, 2T, C) hidden stack (each window on its own)."""
        with self._autocast():
            return self._run(self._encode, wave)

    @torch.inference_mode()
    def sample_windows(self, audio: torch.Tensor, b: WindowBatch) -> torch.Tensor:
        """Euler-sample a batch of windows from their encoded audio; returns (B, T, 115) normalised."""
        with self._autocast():
            return self._run(self._sample, audio, b, self.steps)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _encode(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model.audio_stack(self.model.encoder.frontend(wave))

    def _sample(self, audio: torch.Tensor, b: WindowBatch, steps: int) -> torch.Tensor:
        """The whole sampler of one batch of windows: the per-window condition once, then the Euler steps."""
        dit = self.model.dit
        cond = dit.condition(audio, *b.condition_inputs())
        x = euler_sample(lambda x, t: dit.velocity(x, t, cond).to(x.dtype), b.x0, steps)
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

    def step(self, jobs: list[Job], k: int | Sequence[int],
             sent: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Generate window k of every job in ``jobs`` (one batch; ``k`` one index for all, or one per
        job) and extend their histories by the frames each sends: ``sent(i, x_i)`` gives them for job
        i's (T, 115) window (a live session with a hop H < T sends its first H, cross-faded), default
        the whole window.
        Returns the (B, T, 115) normalised windows on the CPU (also appended to each ``keep`` job's ``out``)."""
        b = self.window_batch(jobs, k)
        x = self.sample_windows(self.encode_audio(b.wave), b).cpu()
        states = b.states.cpu()
        L = self.cfg.history_frames
        for i, j in enumerate(jobs):
            if j.keep:
                j.out.append(x[i])
            frames = x[i] if sent is None else sent(i, x[i])
            j.hist = torch.cat([j.hist, frames])[-L:]
            j.hist_states = torch.cat([j.hist_states, states[i, :len(frames)]])[-L:]
        return x

    def denormalize(self, x: torch.Tensor) -> np.ndarray:
        """Normalised (..., 115) model output -> raw motion (numpy)."""
        return self.model.stats.denormalize(x).numpy()

    def finish(self, job: Job) -> Motion:
        """The job's generated frames as a ``Motion`` (cut to the clip's length)."""
        norm = torch.cat(job.out)[: job.n_frames] if job.out else torch.zeros(0, MOTION_DIM)
        return Motion(self.denormalize(norm), job.avatar.shape, job.states, MOTION_FPS)
