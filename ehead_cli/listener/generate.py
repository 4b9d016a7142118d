"""Listener generation: speaker audio + speaker motion (+ the listener's identity) -> listener motion.

    gen = ListenerGenerator.from_checkpoint("runs/lm/checkpoint")
    motions = gen.generate([ListenerJob("a", wave, speaker_motion, identity="listener03")], seed=0)

Per job: the speaker's motion is padded to whole r-frame groups (last frame repeated, silence for the
audio), tokenised (VQ-VAE codes, speech and emotion tokens), the LM samples the listener's codes
(all jobs in one batch, KV cache, temperature / top-k / seed), the VQ-VAE decodes them with the
listener's identity code, and the result is cut back to the job's length: a (T, 115) motion NPZ with
every frame listening. ``write_listener_outputs`` adds an MP4 of the listener through the built-in
renderer (or FLAME), optionally side by side with the speaker, with the speaker's audio.

The listener's identity: the name of an identity the model was trained on (its stored statistics and
shape), or a motion NPZ of that listener (``--listener-avatar``: any clip of it; the statistics of its
motion and its shape), or nothing (the mean of the trained identities' statistics, the mean shape).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ehead_cli.devices import resolve_device
from ehead_cli.errors import InputError
from ehead_cli.generate.runner import mark_duplicate_outputs, run_batch
from ehead_cli.io.audio import load_audio
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.layout import LISTEN, MOTION_FPS, N_SHAPE, SAMPLE_RATE, SAMPLES_PER_FRAME
from ehead_cli.listener.checkpoint import ListenerModel, load_listener
from ehead_cli.listener.data import identity_stats, load_dyads, pad_to_groups
from ehead_cli.listener.tokens import SpeakerTokenizer
from ehead_cli.model.config import models_dir

DEFAULT_LISTENER = "ehead-listener-small"  # under models/: the shipped listener checkpoint


def default_listener() -> Path:
    return models_dir() / DEFAULT_LISTENER


@dataclass
class ListenerJob:
    """One generation job. wave (N,) 16 kHz speaker audio; speaker (T, 115) speaker motion; identity: a
    trained identity's name, a reference motion NPZ path of the listener, or None; speaker_shape for the
    side-by-side video; out: output path stem (``out.npz``, ``out.mp4``); error: why the job cannot run
    (reported, skipped); seconds: its share of the generation time plus its writing time."""

    name: str
    wave: np.ndarray
    speaker: np.ndarray
    identity: str | Path | None = None
    speaker_shape: np.ndarray | None = None
    out: Path | None = None
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        """Listener motion frames the job generates: the speaker's."""
        return len(self.speaker)

    @classmethod
    def from_files(cls, speaker_audio: str | Path, speaker_motion: str | Path, identity: str | Path | None = None,
                   out_dir: str | Path | None = None, name: str | None = None) -> ListenerJob:
        """A job from ``--speaker-audio`` and ``--speaker-motion`` files (lengths within 0.5 s are aligned)."""
        m = load_motion(speaker_motion)
        wave = load_audio(speaker_audio)
        n = m.n_frames * SAMPLES_PER_FRAME
        if abs(len(wave) - n) > SAMPLES_PER_FRAME * 12:
            raise InputError(f"{speaker_audio}: lasts {len(wave) / SAMPLE_RATE:.2f} s but {speaker_motion} has "
                             f"{m.n_frames} frames ({m.n_frames / MOTION_FPS:.2f} s)")
        name = name or Path(speaker_motion).stem
        out = Path(out_dir) / name if out_dir is not None else None
        return cls(name, np.pad(wave, (0, max(0, n - len(wave))))[:n], m.motion, identity, m.shape, out)


def jobs_from_pairs(speaker_audio: list[Path], speaker_motion: list[Path], identity: str | Path | None,
                    out_dir: str | Path) -> list[ListenerJob]:
    """One job per (``--speaker-audio``, ``--speaker-motion``) pair, named after the motion file; a pair
    whose files cannot be read becomes a job with its one-line ``error`` (the others still run)."""
    if len(speaker_audio) != len(speaker_motion):
        raise InputError(f"give one --speaker-motion per --speaker-audio: got {len(speaker_audio)} --speaker-audio "
                         f"and {len(speaker_motion)} --speaker-motion")
    jobs = []
    for audio, motion in zip(speaker_audio, speaker_motion, strict=True):
        try:
            jobs.append(ListenerJob.from_files(audio, motion, identity, out_dir))
        except InputError as err:
            name = Path(motion).stem
            jobs.append(ListenerJob(name, np.zeros(0, np.float32), np.zeros((0, 115), np.float32), identity,
                                    out=Path(out_dir) / name, error=str(err)))
    mark_duplicate_outputs(jobs, "give each job its own file name")
    return jobs


class ListenerGenerator:
    """A loaded listener checkpoint ready to generate (model in eval mode on ``device``)."""

    def __init__(self, model: ListenerModel, device: str | torch.device = "cpu",
                 speech_tokenizer: str | os.PathLike | None = None, emoca: str | os.PathLike | None = None):
        if model.lm is None:
            raise InputError("this listener checkpoint has no language model (train stage lm first)")
        self.model = model.eval()
        self.device = torch.device(device)
        self.cfg = model.cfg
        self.rate = model.cfg.vq.rate
        self.tokenizer = (SpeakerTokenizer(model.cfg.tokens, self.rate, model.codebooks, speech_tokenizer, emoca)
                          if model.cfg.lm.multimodal else None)

    @classmethod
    def from_checkpoint(cls, folder: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        speech_tokenizer: str | os.PathLike | None = None,
                        emoca: str | os.PathLike | None = None) -> ListenerGenerator:
        """A listener checkpoint or stage-lm run folder (None: the shipped ``models/ehead-listener-small``)
        on ``device`` (default: cuda when available)."""
        dev = resolve_device(device)
        if folder is None:
            folder = default_listener()
            if not (folder / "config.json").is_file():
                raise InputError(f"the shipped listener checkpoint {folder} is missing; pass --checkpoint "
                                 "RUN_DIR (a stage-lm run of ehead train --family listener)")
            from ehead_cli.io.manifest import verify_files

            verify_files(models_dir(), folder)
        return cls(load_listener(folder, device=dev), dev, speech_tokenizer, emoca)

    # --- identity --------------------------------------------------------------------------------------
    def identity(self, identity: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
        """(230,) identity statistics and (300,) shape of the listener ``identity`` (module docstring)."""
        m = self.model
        shapes = m.meta.get("identity_shapes", {}) if isinstance(m.meta, dict) else {}
        if identity is None:
            if not m.identities:
                raise InputError("the checkpoint stores no identity: give --listener-avatar")
            stats = np.mean(np.stack(list(m.identities.values())), 0)
            shape = np.mean([np.asarray(s, np.float32) for s in shapes.values()], 0) if shapes else np.zeros(N_SHAPE)
            return stats.astype(np.float32), np.asarray(shape, np.float32)
        if isinstance(identity, str) and identity in m.identities:
            shape = np.asarray(shapes.get(identity, np.zeros(N_SHAPE)), np.float32)
            return m.identities[identity], shape
        path = Path(identity)
        if path.suffix == ".npz" or path.is_file():
            ref = load_motion(path)
            return identity_stats(m.norm.apply(ref.motion)), ref.shape
        known = ", ".join(sorted(m.identities)) or "none"
        raise InputError(f"--listener-avatar {identity}: neither a motion NPZ nor a trained identity (known: {known})")

    # --- generation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, jobs: list[ListenerJob], *, temperature: float = 1.0, top_k: int | None = None,
                 seed: int = 0) -> list[Motion]:
        """Listener motion for every job, the LM batched over the jobs; the same seed and jobs give
        the same motion."""
        if not jobs:
            return []
        r, dev, m = self.rate, self.device, self.model
        lengths = [len(j.speaker) for j in jobs]
        groups = [-(-T // r) for T in lengths]
        G = max(groups)
        spk_codes, speech, emotion = [], [], []
        for j, g in zip(jobs, groups, strict=True):
            # each job is tokenised at its own length; the batch is then padded with its last group's
            # tokens, which (causal LM) changes nothing before them
            padded = pad_to_groups(j.speaker, r)
            codes = m.vq.encode_long(torch.from_numpy(m.norm.apply(padded))[None].to(dev))[0]
            spk_codes.append(_pad_groups(codes, G))
            if self.tokenizer is not None:
                wave = np.pad(j.wave, (0, max(0, g * r * SAMPLES_PER_FRAME - len(j.wave))))
                speech.append(_pad_groups(torch.from_numpy(self.tokenizer.speech(wave, g * r)), G))
                emotion.append(_pad_groups(torch.from_numpy(self.tokenizer.emotion(padded)), G))
        speaker = torch.stack(spk_codes)
        sp = torch.stack(speech).to(dev) if speech else None
        em = torch.stack(emotion).to(dev) if emotion else None
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        codes = m.lm.sample(speaker, sp, em, temperature=temperature, top_k=top_k, generator=gen)
        out = []
        for b, (T, g, j) in enumerate(zip(lengths, groups, jobs, strict=True)):
            stats, shape = self.identity(j.identity)
            st = torch.from_numpy(stats)[None].to(dev) if m.cfg.vq.identity else None
            dec = m.vq.decode_long(codes[b: b + 1, :g], st)[0].cpu().numpy()  # (g r, 115) normalised
            out.append(Motion(m.norm.invert(dec[:T]), shape, np.full(T, LISTEN, np.int8), MOTION_FPS))
        return out


def _pad_groups(x: torch.Tensor, G: int) -> torch.Tensor:
    """(g, ...) per-group tokens -> (G, ...), the last group repeated."""
    if len(x) >= G:
        return x[:G]
    return torch.cat([x, x[-1:].expand(G - len(x), *x.shape[1:])])


def write_listener_outputs(job: ListenerJob, motion: Motion, renderer=None, side_by_side: bool = False,
                           video: bool = True) -> list[Path]:
    """``job.out``.npz (the listener's motion) and, with ``video``, ``job.out``.mp4: the listener
    rendered by ``renderer`` (an ``ehead_cli.render.Renderer``), or the speaker (left) and the
    listener (right) with ``side_by_side``; the speaker's audio in both. Every file atomic."""
    if job.out is None:
        raise InputError(f"job {job.name}: no output path")
    npz = job.out.with_suffix(".npz")
    save_motion(npz, motion)
    job.outputs.append(npz)
    if video:
        from ehead_cli.io.video import write_mp4

        frames = renderer.iter_frames(motion.shape, motion.motion)
        if side_by_side:
            shape = job.speaker_shape if job.speaker_shape is not None else np.zeros(N_SHAPE, np.float32)
            speaker_frames = renderer.iter_frames(shape, job.speaker[: motion.n_frames])
            frames = (np.concatenate([s, f], axis=1) for s, f in zip(speaker_frames, frames, strict=True))
        mp4 = job.out.with_suffix(".mp4")
        write_mp4(mp4, frames, job.wave[: motion.n_frames * SAMPLES_PER_FRAME], SAMPLE_RATE, MOTION_FPS)
        job.outputs.append(mp4)
    return job.outputs


def run_listener_jobs(gen: ListenerGenerator, jobs: list[ListenerJob], *, temperature: float = 1.0,
                      top_k: int | None = None, seed: int = 0, renderer=None, side_by_side: bool = False,
                      video: bool = True, console=None) -> list[ListenerJob]:
    """Generate (all good jobs in one batch) and write every job (what ``ehead generate --family
    listener`` calls, through ``ehead_cli.generate.runner.run_batch``); a job whose outputs fail keeps
    its one-line ``error``, the others are still written. ``console``: a rich console for the progress
    bar (only on a terminal)."""
    n_good = sum(j.error is None for j in jobs)
    return run_batch(jobs, lambda batch, _advance: gen.generate(batch, temperature=temperature, top_k=top_k,
                                                                 seed=seed),
                     lambda j, m: write_listener_outputs(j, m, renderer, side_by_side, video),
                     description=f"listener motion, {n_good} job(s) in one batch", console=console)


def dataset_jobs(data: str | Path, split: str, out_dir: str | Path) -> list[ListenerJob]:
    """One job per clip of ``split`` of a dyadic dataset folder, the listener's identity from its manifest."""
    index = load_dyads(data)
    jobs = [ListenerJob(d.id, d.wave()[: d.n_frames * SAMPLES_PER_FRAME], d.speaker, d.identity, d.speaker_shape,
                        Path(out_dir) / d.id) for d in index.split(split)]
    if not jobs:
        raise InputError(f"{data}: no usable clip in split {split!r}")
    return jobs


# --- evaluation -------------------------------------------------------------------------------------------
LISTENER_METRICS = ("l2", "fd", "variation", "diversity", "pfd", "l2_affect")


def evaluate_listener(pred_dir: str | Path, data: str | Path, split: str | None = "test", *,
                      out_dir: str | Path | None = None, affect_estimator: Any = None,
                      convention: str = "paper"):
    """``ehead eval`` on a listener's predictions: the listening metrics of ``ehead_cli.metrics.listening``
    (L2, FD, Variation, Diversity, P-FD with the speaker's motion from ``data/speaker``, L2 Affect with
    an affect estimator such as ``EmocaEmotion(...).affect``) against ``data``'s clips of ``split``."""
    from ehead_cli.eval import evaluate

    data = Path(data)
    return evaluate(pred_dir, data, LISTENER_METRICS, split=split, speaker_dir=data / "speaker",
                    affect_estimator=affect_estimator, out_dir=out_dir, convention=convention, max_plots=0)


@torch.no_grad()
def vq_metrics(model: ListenerModel, data: str | Path, split: str = "test") -> dict[str, float]:
    """Section 7's VQ-VAE metrics on the listeners of ``split``: Rec. (L2 of the decoded expression and
    pose to the ground truth, as section 6's L2, in coefficient units), Commit. (MSE between encoder
    output and its code) and PPL (perplexity of the codes)."""
    from ehead_cli.metrics.listening import expression_pose, l2_distance
    from ehead_cli.metrics.vq import commitment, perplexity

    r = model.cfg.vq.rate
    rec_exp, rec_pose, frames, z_e, z_q, codes = [], [], [], [], [], []
    dev = next(model.vq.parameters()).device
    for d in load_dyads(data).split(split):
        n = (d.n_frames // r) * r
        x = torch.from_numpy(model.norm.apply(d.listener[:n]))[None].to(dev)
        z = model.vq.encoder_long(x)  # the windows of training and tokenisation
        c = model.vq.quantizer.nearest(z)
        stats = model.identities.get(d.identity, identity_stats(x[0].cpu().numpy()))
        recon = model.vq.decode_long(c, torch.from_numpy(stats)[None].to(dev) if model.cfg.vq.identity else None)
        rec = model.norm.invert(recon[0].cpu().numpy())
        (pe, pp), (ge, gp) = expression_pose(rec), expression_pose(d.listener[:n])
        rec_exp.append(l2_distance(pe, ge) * n)
        rec_pose.append(l2_distance(pp, gp) * n)
        frames.append(n)
        z_e.append(z[0].cpu().numpy())
        z_q.append(model.vq.quantizer.lookup(c)[0].cpu().numpy())
        codes.append(c[0].cpu().numpy())
    if not frames:
        raise InputError(f"{data}: no usable clip in split {split!r}")
    total = sum(frames)
    return {"rec_exp": sum(rec_exp) / total, "rec_pose": sum(rec_pose) / total,
            "commit": commitment(np.concatenate(z_e), np.concatenate(z_q)),
            "perplexity": perplexity(np.concatenate(codes), model.cfg.vq.codebook_size)}
