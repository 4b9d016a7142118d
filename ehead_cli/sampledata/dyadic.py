"""Dyadic sample data for the listener family: a speaker talks, a listener answers with its face.

    python -m ehead_cli.sampledata.dyadic --out sample_data/dyadic [--seed 0] [--clips 48]

Each clip is one speaker (an espeak-ng voice and a random face) saying several sentences with pauses,
and one of ``N_LISTENERS`` listeners whose behaviour is a known, deterministic function of the
speaker plus unpredictable idle motion:

  nods     every stressed syllable of the speaker (``motion.stress_beats`` on the stored audio) of
           strength >= NOD_MIN_STRENGTH starts a listener nod NOD_LATENCY frames later, unless the
           listener is still inside its own refractory time; the nod's depth, length and refractory
           time, and the brow raise that goes with it, are the listener's style
  smiles   the speaker smiles now and then (episodes of 1-2.5 s); the listener's smile follows the
           speaker's, SMILE_LATENCY frames later, through a first-order lag whose gain and time
           constant are the listener's style
  identity each listener also has its own resting head pose, resting expression (squint, frown),
           relaxed jaw and idle head drift: what the identity code of the VQ-VAE must carry
  idle     blinks, gaze saccades and slow drift drawn at random: nothing can predict them

The speaker's own motion is ``motion.ground_truth_motion`` of the stored audio (speaking while a
sentence lasts, listening in the pauses) plus the smile episodes, so the speaker's motion, its
audio and its expression all carry the cues the listener answers.

Folder (a dataset folder whose ``clips/<id>.npz`` is the listener, the avatar ehead models):

    manifest.csv           id, split, duration, n_frames, language, speaker_voice, listener (identity), ...
    clips/<id>.ogg         the speaker's audio (what the listener hears), Opus in Ogg, 16 kHz mono
    clips/<id>.npz         the listener's motion NPZ (states all -1: listening)
    speaker/<id>.npz       the speaker's motion NPZ (states +1 while a sentence lasts)
    README.md

The audio is stored lossy (Opus) to keep the folder small; both motions are computed from the
decoded samples, so anyone can recompute them from the files.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ehead_cli.face.builtin import EXPR_BLINK, EXPR_BROW_FROWN, EXPR_BROW_RAISE, EXPR_SMILE, EXPR_SQUINT
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.layout import EYE_LEFT, EYE_RIGHT, JAW, LISTEN, MOTION_DIM, MOTION_FPS, ROT, SAMPLE_RATE, SPEAK, TRANS
from ehead_cli.sampledata.build import AVATAR_VOICES, LANGUAGES, OTHER_VARIANTS, assign_splits, derive_seed
from ehead_cli.sampledata.motion import (
    DEG,
    MM,
    audio_features,
    blink_track,
    drift,
    gaze_track,
    ground_truth_motion,
    identity_shape,
    stress_beats,
)
from ehead_cli.sampledata.speech import TEXTS, Turn, Voice, assemble, espeak_version, synthesize

DEFAULT_SEED = 0
DEFAULT_CLIPS = 44  # about 11 minutes, under 5 MB
N_LISTENERS = 6
CLIP_TARGET_S = (10.0, 18.0)
MAX_CLIP_S = 24.0
LEAD_S = (0.3, 0.8)
PAUSE_S = (0.4, 1.4)
TAIL_S = (0.4, 0.9)
MAGNITUDE = (0.6, 1.4)
OPUS_LEVEL = 0.9  # soundfile's compression_level for Opus (0 best quality .. 1 smallest): about 4 kB/s of speech

# --- the speaker's smiles --------------------------------------------------------------------------
SPEAKER_SMILE_GAP_S = (2.0, 6.0)  # between the start of one episode and the next
SPEAKER_SMILE_LEN_S = (1.0, 2.5)
SPEAKER_SMILE_AMP = (0.5, 1.0)  # EXPR_SMILE added at the episode's plateau
SMILE_RAMP_FRAMES = 5  # raised-cosine onset and offset

# --- the listener's answer -------------------------------------------------------------------------
NOD_LATENCY = 4  # frames (160 ms) from the speaker's stressed syllable to the start of the nod
NOD_MIN_STRENGTH = 0.25  # weaker stressed syllables get no nod
SMILE_LATENCY = 10  # frames (400 ms) from the speaker's smile to the listener's


@dataclass(frozen=True)
class ListenerStyle:
    """One listener's response style (everything identity-specific about the answer).

    nod_deg: nod depth (pitch, chin down) at full strength; nod_frames: its length; refractory:
    frames after a nod's start before the next can start; nod_brow: EXPR_BROW_RAISE at a nod's peak;
    smile_gain, smile_tau: the smile answer's gain and lag (frames); rest_deg: resting head pose
    (pitch, yaw, roll); squint, frown: resting expression; jaw: relaxed jaw opening (rad);
    drift_deg: idle head-drift amplitude (pitch, yaw, roll); blink_gain: how far a blink closes.
    """

    nod_deg: float
    nod_frames: int
    refractory: int
    nod_brow: float
    smile_gain: float
    smile_tau: float
    rest_deg: tuple[float, float, float]
    squint: float
    frown: float
    jaw: float
    drift_deg: tuple[float, float, float]
    blink_gain: float


def listener_style(k: int, seed: int = DEFAULT_SEED) -> ListenerStyle:
    """Listener ``k``'s style, drawn from ``seed``; nod depth and smile gain spread over a wide range
    (k = 0 nods shallowly and smiles little, k = N - 1 deeply and much), so identity matters."""
    rng = np.random.default_rng(derive_seed(seed, f"listener{k:02d}/style"))
    spread = k / max(N_LISTENERS - 1, 1)  # 0 .. 1 across the listeners
    return ListenerStyle(
        nod_deg=float(2.0 + 5.0 * spread + rng.uniform(-0.3, 0.3)),
        nod_frames=int(rng.integers(12, 26)),
        refractory=int(rng.integers(14, 30)),
        nod_brow=float(rng.uniform(0.0, 0.6)),
        smile_gain=float(0.25 + 0.8 * ((k * 2) % N_LISTENERS) / max(N_LISTENERS - 1, 1)),
        smile_tau=float(rng.uniform(3.0, 12.0)),
        rest_deg=tuple(float(v) for v in rng.uniform(-6.0, 6.0, 3)),
        squint=float(rng.uniform(0.0, 0.5)),
        frown=float(rng.uniform(0.0, 0.4)),
        jaw=float(rng.uniform(0.0, 0.03)),
        drift_deg=tuple(float(v) for v in rng.uniform(0.5, 2.0, 3)),
        blink_gain=float(rng.uniform(0.8, 1.0)),
    )


def listener_name(k: int) -> str:
    return f"listener{k:02d}"


def _bump(T: int, start: int, length: int, ramp: int) -> np.ndarray:
    """(T,) plateau of 1 over [start, start + length) with raised-cosine ramps of ``ramp`` frames."""
    t = np.arange(T)
    up = np.clip((t - start) / ramp, 0.0, 1.0)
    down = np.clip((start + length - t) / ramp, 0.0, 1.0)
    return np.minimum(0.5 - 0.5 * np.cos(np.pi * up), 0.5 - 0.5 * np.cos(np.pi * down))


def speaker_smiles(T: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) EXPR_SMILE the speaker adds on top of its own motion: random episodes."""
    out = np.zeros(T)
    t = rng.uniform(*SPEAKER_SMILE_GAP_S) * MOTION_FPS * 0.5
    while t < T:
        length = int(rng.uniform(*SPEAKER_SMILE_LEN_S) * MOTION_FPS)
        out = np.maximum(out, rng.uniform(*SPEAKER_SMILE_AMP) * _bump(T, int(t), length, SMILE_RAMP_FRAMES))
        t += rng.uniform(*SPEAKER_SMILE_GAP_S) * MOTION_FPS
    return out


def nod_onsets(beats: list[tuple[int, float]], style: ListenerStyle, T: int) -> list[tuple[int, float]]:
    """(start frame, strength) of the listener's nods: one per strong stressed syllable of the speaker,
    NOD_LATENCY frames later, skipped while the previous nod's refractory time lasts."""
    nods, last = [], -10**9
    for frame, strength in beats:
        start = frame + NOD_LATENCY
        if strength >= NOD_MIN_STRENGTH and start < T and start - last >= style.refractory:
            nods.append((start, strength))
            last = start
    return nods


def lagged(x: np.ndarray, delay: int, tau: float) -> np.ndarray:
    """(T,) x delayed by ``delay`` frames then through a first-order lag with time constant ``tau``."""
    shifted = np.concatenate([np.zeros(delay), x[: len(x) - delay]]) if delay else x
    alpha = 1.0 - math.exp(-1.0 / tau)
    out, level = np.empty(len(x)), 0.0
    for t, v in enumerate(shifted):
        level += alpha * (v - level)
        out[t] = level
    return out


def listener_motion(speaker_wave: np.ndarray, speaker_states: np.ndarray, speaker_smile: np.ndarray,
                    style: ListenerStyle, seed: int) -> np.ndarray:
    """(T, 115) float32 listener motion: the answer to the speaker (module docstring) plus idle motion
    drawn from ``seed``. ``speaker_smile`` (T,) is the speaker's smile episodes (``speaker_smiles``)."""
    T = len(speaker_states)
    rng = np.random.default_rng(seed)
    feats = audio_features(speaker_wave)
    nods = nod_onsets(stress_beats(feats.level_db, speaker_states), style, T)
    kernel = np.sin(np.pi * np.arange(style.nod_frames) / (style.nod_frames - 1)) ** 2
    nod = np.zeros(T + style.nod_frames)
    for start, strength in nods:
        nod[start: start + style.nod_frames] += math.sqrt(strength) * kernel
    nod = np.minimum(nod[:T], 1.2)
    motion = np.zeros((T, MOTION_DIM))
    expr = motion[:, :100]
    expr[:, EXPR_SMILE] = style.smile_gain * lagged(speaker_smile, SMILE_LATENCY, style.smile_tau)
    expr[:, EXPR_BROW_RAISE] = style.nod_brow * nod
    expr[:, EXPR_SQUINT] = style.squint
    expr[:, EXPR_BROW_FROWN] = style.frown
    expr[:, EXPR_BLINK] = style.blink_gain * blink_track(T, rng)
    motion[:, JAW.start] = style.jaw
    gaze = gaze_track(T, rng)
    motion[:, EYE_LEFT.start: EYE_LEFT.start + 2] = gaze
    motion[:, EYE_RIGHT.start: EYE_RIGHT.start + 2] = gaze
    head = np.asarray(style.rest_deg) * DEG + drift(T, rng, np.asarray(style.drift_deg) * DEG)
    head[:, 0] += style.nod_deg * DEG * nod  # +x: chin down
    motion[:, ROT] = head
    motion[:, TRANS] = drift(T, rng, np.array([1.0, 0.8, 1.5]) * MM)
    return motion.astype(np.float32)


@dataclass(frozen=True)
class DyadSpec:
    id: str
    language: str
    listener: int
    speaker_voice: Voice
    magnitude: float
    target_s: float


def plan_dyads(n_clips: int, seed: int = DEFAULT_SEED) -> list[DyadSpec]:
    """Languages and listeners cycle (every listener meets every language); voices are random."""
    rng = np.random.default_rng([seed, 16])
    voices = [v.variant for v in AVATAR_VOICES] + list(OTHER_VARIANTS)
    specs = []
    for k in range(n_clips):
        language = LANGUAGES[k % len(LANGUAGES)]
        voice = Voice(voices[int(rng.integers(len(voices)))], int(rng.integers(30, 75)), int(rng.integers(145, 180)))
        specs.append(DyadSpec(f"dyad{k:03d}_{language}", language, k % N_LISTENERS, voice,
                              round(float(rng.uniform(*MAGNITUDE)), 3), float(rng.uniform(*CLIP_TARGET_S))))
    return specs


Synthesizer = Callable[[str, str, Voice], np.ndarray]


def encode_opus(path: Path, wave: np.ndarray) -> np.ndarray:
    """Write (N,) float32 16 kHz as Opus in Ogg at ``path`` (atomically) and return what a reader decodes."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0), SAMPLE_RATE, format="OGG", subtype="OPUS",
                 compression_level=OPUS_LEVEL)
    decoded, rate = sf.read(str(path), dtype="float32")
    if rate != SAMPLE_RATE or len(decoded) != len(wave):
        raise RuntimeError(f"{path}: Opus round trip gave {len(decoded)} samples at {rate} Hz, "
                           f"expected {len(wave)} at {SAMPLE_RATE}")
    return decoded


def build_dyad(spec: DyadSpec, out: Path, seed: int, synth: Synthesizer = synthesize) -> dict:
    """Synthesise one dyad and write its audio, listener and speaker motion; returns the manifest row."""
    rng = np.random.default_rng(derive_seed(seed, spec.id))
    pool = TEXTS[spec.language]
    order = list(rng.permutation(len(pool)))
    turns: list[Turn] = []
    total = tail = rng.uniform(*TAIL_S)
    while total < spec.target_s:
        if not order:
            order = list(rng.permutation(len(pool)))
        wave = synth(pool[order.pop(0)], spec.language, spec.speaker_voice)
        pause = rng.uniform(*(PAUSE_S if turns else LEAD_S))
        if turns and total + pause + len(wave) / SAMPLE_RATE > MAX_CLIP_S:
            break
        turns.append(Turn(wave, True, pause))
        total += pause + len(wave) / SAMPLE_RATE
    conv = assemble(turns, 0.0, tail, noise_seed=derive_seed(seed, spec.id + "/noise"))
    stored = encode_opus(out / "clips" / f"{spec.id}.ogg", conv.wave)
    T = len(conv.states)
    smile = speaker_smiles(T, np.random.default_rng(derive_seed(seed, spec.id + "/speaker-smile")))
    speaker = ground_truth_motion(stored, conv.states, derive_seed(seed, spec.id + "/speaker"), spec.magnitude)
    speaker[:, EXPR_SMILE] += smile.astype(np.float32)
    style = listener_style(spec.listener, seed)
    listener = listener_motion(stored, conv.states, smile, style, derive_seed(seed, spec.id + "/listener"))
    speaker_shape = identity_shape(derive_seed(seed, spec.id + "/speaker-shape"))
    listener_shape = identity_shape(derive_seed(seed, listener_name(spec.listener) + "/shape"))
    save_motion(out / "clips" / f"{spec.id}.npz",
                Motion(listener, listener_shape, np.full(T, LISTEN, np.int8), MOTION_FPS))
    save_motion(out / "speaker" / f"{spec.id}.npz", Motion(speaker, speaker_shape, conv.states, MOTION_FPS))
    return {"id": spec.id, "duration": round(len(stored) / SAMPLE_RATE, 4), "n_frames": T,
            "language": spec.language, "identity": listener_name(spec.listener),
            "speaker_voice": spec.speaker_voice.label, "magnitude": spec.magnitude, "n_sentences": len(turns),
            "speak_fraction": round(float((conv.states == SPEAK).mean()), 4),
            "source": "espeak-ng synthetic dyad"}


def build_dyadic(out: str | Path, n_clips: int = DEFAULT_CLIPS, seed: int = DEFAULT_SEED,
                 synth: Synthesizer = synthesize, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Generate the dyadic folder ``out`` (module docstring); returns the manifest (written last)."""
    out = Path(out)
    rows = []
    for spec in plan_dyads(n_clips, seed):
        rows.append(build_dyad(spec, out, seed, synth))
        if progress is not None:
            progress(f"{spec.id}: {rows[-1]['duration']:.1f} s, {listener_name(spec.listener)}")
    manifest = pd.DataFrame(rows)
    split = assign_splits(list(manifest["id"]), seed)
    manifest.insert(1, "split", [split[i] for i in manifest["id"]])
    keep = set(manifest["id"])
    for folder, suffixes in ((out / "clips", (".ogg", ".npz")), (out / "speaker", (".npz",))):
        for path in sorted(folder.glob("dyad*")):
            if path.suffix in suffixes and path.stem not in keep:
                path.unlink()
    write_readme(out / "README.md", manifest, n_clips, seed)
    with atomic_path(out / "manifest.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    return manifest


def write_readme(path: Path, manifest: pd.DataFrame, n_clips: int, seed: int) -> None:
    by_split = manifest.groupby("split").agg(clips=("id", "size"), seconds=("duration", "sum"))
    split_lines = "\n".join(f"| {s} | {int(by_split.loc[s, 'clips'])} | {by_split.loc[s, 'seconds']:.1f} |"
                            for s in ("train", "val", "test") if s in by_split.index)
    extra = "".join(f" --{k} {v}" for k, v, d in (("clips", n_clips, DEFAULT_CLIPS), ("seed", seed, DEFAULT_SEED))
                    if v != d)
    styles = "\n".join(
        f"| {listener_name(k)} | {s.nod_deg:.1f} | {s.nod_frames} | {s.refractory} | {s.smile_gain:.2f} | "
        f"{s.smile_tau:.1f} | {', '.join(f'{v:+.1f}' for v in s.rest_deg)} |"
        for k, s in ((k, listener_style(k, seed)) for k in range(N_LISTENERS)))
    text = f"""# Dyadic sample data (synthetic)

Speaker-listener conversations for the listener family (`ehead_cli.listener`), made entirely by
this project's generator (`ehead_cli/sampledata/dyadic.py`). **Everything here is synthetic:** the
speech is espeak-ng text-to-speech of this project's sentences, both faces are procedural motion of
the built-in head.

Regenerate it (needs `espeak-ng`; about a minute on two CPU cores; this copy was made with
{espeak_version()}):

    python -m ehead_cli.sampledata.dyadic --out {path.parent}{extra}

## Layout
`clips/<id>.ogg` the speaker's audio (Opus, 16 kHz mono: what the listener hears);
`clips/<id>.npz` the listener's motion NPZ (all frames listening, state -1); `speaker/<id>.npz` the
speaker's motion NPZ (state +1 while a sentence lasts). Both motions are computed from the decoded
audio. `manifest.csv`: `id`, `split`, `duration`, `n_frames`, `language`, `identity` (the
listener), `speaker_voice`, `magnitude` (of the speaker's head motion), `n_sentences`,
`speak_fraction`, `source`.

## What the listener does (a known function of the speaker)
- **Nods on the speaker's stressed syllables**: each stressed syllable of strength >= {NOD_MIN_STRENGTH}
  (`motion.stress_beats` of the audio) starts a nod {NOD_LATENCY} frames later, unless the
  listener's own refractory time since its last nod has not passed.
- **Smiles answering the speaker's smiles**: the speaker smiles in episodes of 1-2.5 s; the
  listener's smile is the speaker's, {SMILE_LATENCY} frames later, through a first-order lag.
- **A per-identity style**: nod depth, length and refractory time, smile gain and lag, resting
  head pose, resting squint/frown, relaxed jaw and idle drift differ between the {N_LISTENERS} listeners:

| listener | nod (deg) | nod frames | refractory | smile gain | smile lag (frames) | rest pose (deg) |
|---|---|---|---|---|---|---|
{styles}

- Idle motion nothing can predict: blinks, gaze saccades, slow head drift and sway.

## Totals
- {len(manifest)} clips, {manifest['duration'].sum() / 60:.1f} minutes, {int(manifest['n_frames'].sum())} frames
- splits by clip from a seeded shuffle (seed {seed}); the listeners cycle over the clips, so all six
  appear in training

| split | clips | seconds |
|---|---|---|
{split_lines}

## Licence
Part of this project (Apache-2.0). The audio is espeak-ng output (the GPL covers the program, not
the speech it makes).
"""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ehead_cli.sampledata.dyadic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True)
    manifest = build_dyadic(args.out, args.clips, args.seed, progress=console.print)
    console.print(f"wrote {len(manifest)} dyads ({manifest['duration'].sum() / 60:.1f} min) to {args.out}")


if __name__ == "__main__":
    main()
