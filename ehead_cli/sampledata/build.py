"""The sample-data generator: synthetic two-person conversations -> a dataset folder.

    python -m ehead_cli.sampledata --out sample_data [--seed 0] [--clips 50]

For each clip (all choices drawn from ``seed``): a language, an identity (a shape vector and the
avatar's espeak-ng voice), an interlocutor voice different from the avatar's, the interlocutor's
loudness (as loud as the avatar in about 40 % of the clips, quieter in the rest), a motion
magnitude, and alternating turns of one or two sentences with short pauses until the clip reaches
its target length (5-20 s). The turns are synthesised, mixed into one 16 kHz stream
(``speech.assemble``), stored as 16-bit FLAC, and the motion is computed from exactly the stored
samples (``motion.ground_truth_motion``), so anyone can recompute it from the files.

Output (the dataset-folder contract of ``ehead train --data``): ``clips/<id>.flac``,
``clips/<id>.npz`` (motion, shape, states), ``manifest.csv`` written last, and ``README.md`` with
the totals. Clips are split train/val/test (80/10/10) by a seeded shuffle.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.dataset import SPLIT_FRACTIONS, clips_dir, write_manifest
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.io.states import write_states
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SPEAK
from ehead_cli.sampledata.motion import ground_truth_motion, identity_shape
from ehead_cli.sampledata.speech import TEXTS, Turn, Voice, assemble, espeak_version, quantise_pcm16, synthesize

DEFAULT_SEED = 0
TEST_JOBS = "test_jobs.csv"  # the test split as an `ehead generate --jobs` file
DEFAULT_CLIPS = 50  # about 10 minutes in all
LANGUAGES = ("en", "es", "de", "fr", "it", "pt")
CLIP_TARGET_S = (5.0, 13.0)  # uniform target length; a clip stops at the first turn reaching it
MIN_CLIP_S, MAX_CLIP_S = 5.0, 20.0
LEAD_S = (0.2, 0.6)  # silence before the first turn
PAUSE_S = (0.3, 0.9)  # silence before every later turn
TAIL_S = (0.3, 0.7)
TWO_SENTENCE_TURN = 0.4  # probability that a turn has two sentences
EQUAL_LOUDNESS = 0.4  # fraction of clips whose interlocutor is as loud as the avatar
EQUAL_GAIN_DB = (-1.5, 1.5)  # interlocutor gain in those clips
QUIET_GAIN_DB = (-16.0, -6.0)  # in the others, like a remote microphone
MAGNITUDE = (0.5, 1.6)  # per-clip scale of head rotation and translation
AVATAR_JITTER = (4, 8)  # per-clip +- pitch and +- speed (wpm) around the identity's voice
OTHER_PITCH = (25, 80)
OTHER_SPEED = (140, 185)

# identity k speaks with voice k: the avatar's voice is part of who it is
AVATAR_VOICES = (
    Voice("m3", 45, 160), Voice("f2", 60, 165), Voice("m1", 38, 150), Voice("f4", 55, 170),
    Voice("m7", 50, 175), Voice("Annie", 62, 160), Voice("Andy", 44, 168), Voice("f5", 52, 155),
)
OTHER_VARIANTS = ("m2", "m4", "m5", "m6", "f1", "f3", "klatt", "steph", "max", "linda", "paul", "david")

Synthesizer = Callable[[str, str, Voice], np.ndarray]  # (text, language, voice) -> (N,) float32 16 kHz


def derive_seed(seed: int, name: str) -> int:
    """A 32-bit seed for ``name`` (a clip or identity id) under the generator's ``seed``."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))]).generate_state(1)[0])


def identity_name(k: int) -> str:
    return f"id{k:02d}"


@dataclass(frozen=True)
class ClipSpec:
    """Everything chosen for one clip before synthesis."""

    id: str
    language: str
    identity: int
    avatar_voice: Voice
    other_voice: Voice
    other_gain_db: float
    magnitude: float
    target_s: float
    avatar_first: bool


def plan_clips(n_clips: int, seed: int = DEFAULT_SEED) -> list[ClipSpec]:
    """The clips' choices, drawn in order from ``seed``: languages and identities cycle so each is
    used about equally; voices, loudness and magnitude are random."""
    rng = np.random.default_rng(seed)
    equal = rng.permutation(n_clips) < round(EQUAL_LOUDNESS * n_clips)
    specs = []
    for k in range(n_clips):
        language = LANGUAGES[k % len(LANGUAGES)]
        ident = (k * 3) % len(AVATAR_VOICES)  # 3 is coprime with 8 and 6: every identity meets every language
        base = AVATAR_VOICES[ident]
        avatar = Voice(base.variant, base.pitch + int(rng.integers(-AVATAR_JITTER[0], AVATAR_JITTER[0] + 1)),
                       base.speed + int(rng.integers(-AVATAR_JITTER[1], AVATAR_JITTER[1] + 1)))
        choices = [v for v in OTHER_VARIANTS if v != base.variant]
        other = Voice(choices[int(rng.integers(len(choices)))], int(rng.integers(*OTHER_PITCH)),
                      int(rng.integers(*OTHER_SPEED)))
        gain = rng.uniform(*(EQUAL_GAIN_DB if equal[k] else QUIET_GAIN_DB))
        specs.append(ClipSpec(
            id=f"conv{k:03d}_{language}", language=language, identity=ident, avatar_voice=avatar,
            other_voice=other, other_gain_db=round(float(gain), 2),
            magnitude=round(float(rng.uniform(*MAGNITUDE)), 3),
            target_s=float(rng.uniform(*CLIP_TARGET_S)), avatar_first=bool(rng.integers(2))))
    return specs


def assign_splits(ids: list[str], seed: int = DEFAULT_SEED) -> dict[str, str]:
    """id -> train | val | test by a seeded shuffle (about 80/10/10, at least one of each when
    there are three or more clips)."""
    n = len(ids)
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_val = max(round(SPLIT_FRACTIONS["val"] * n), 1 if n >= 3 else 0)
    n_test = max(round(SPLIT_FRACTIONS["test"] * n), 1 if n >= 3 else 0)
    split = {}
    for rank, i in enumerate(order):
        split[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


def build_clip(spec: ClipSpec, out: Path, seed: int, synth: Synthesizer = synthesize) -> dict:
    """Synthesise, assemble and write ``clips/<id>.flac``, ``clips/<id>.npz`` and the states as
    ``clips/<id>.csv`` (start,end,state segments) under ``out``; returns the clip's manifest row."""
    rng = np.random.default_rng(derive_seed(seed, spec.id))
    pool = TEXTS[spec.language]
    order = list(rng.permutation(len(pool)))

    def next_text(n_sentences: int) -> str:
        if len(order) < n_sentences:
            order.extend(rng.permutation(len(pool)))
        return " ".join(pool[order.pop(0)] for _ in range(n_sentences))

    turns: list[Turn] = []
    avatar = spec.avatar_first
    total = rng.uniform(*TAIL_S)  # seconds so far, the tail included
    tail_s = total
    while True:
        pause = rng.uniform(*(PAUSE_S if turns else LEAD_S))
        n_sentences = 2 if rng.uniform() < TWO_SENTENCE_TURN else 1
        voice = spec.avatar_voice if avatar else spec.other_voice
        wave = synth(next_text(n_sentences), spec.language, voice)
        if total + pause + len(wave) / SAMPLE_RATE > MAX_CLIP_S and n_sentences == 2:
            wave = synth(next_text(1), spec.language, voice)
        both_roles = len({t.avatar for t in turns}) == 2
        if total + pause + len(wave) / SAMPLE_RATE > MAX_CLIP_S:
            if both_roles:
                break
            raise RuntimeError(f"{spec.id}: one sentence is too long for a {MAX_CLIP_S:.0f} s clip")
        turns.append(Turn(wave, avatar, pause))
        total += pause + len(wave) / SAMPLE_RATE
        avatar = not avatar
        if total >= spec.target_s and len({t.avatar for t in turns}) == 2:
            break
    if total < MIN_CLIP_S:
        raise RuntimeError(f"{spec.id}: only {total:.1f} s of speech, shorter than {MIN_CLIP_S:.0f} s")

    conv = assemble(turns, spec.other_gain_db, tail_s, noise_seed=derive_seed(seed, spec.id + "/noise"))
    pcm = quantise_pcm16(conv.wave)
    stored = pcm.astype(np.float32) / 32768.0  # what a reader of the FLAC gets back
    motion = ground_truth_motion(stored, conv.states, derive_seed(seed, spec.id + "/motion"), spec.magnitude)
    shape = identity_shape(derive_seed(seed, identity_name(spec.identity)))
    clips = clips_dir(out)
    with atomic_path(clips / f"{spec.id}.flac") as tmp:
        sf.write(str(tmp), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    save_motion(clips / f"{spec.id}.npz", Motion(motion, shape, conv.states, MOTION_FPS))
    write_states(clips / f"{spec.id}.csv", conv.states)  # the states as `ehead generate --states` reads them
    n_frames = len(conv.states)
    row = {
        "id": spec.id,
        "duration": round(len(pcm) / SAMPLE_RATE, 4),
        "n_frames": n_frames,
        "language": spec.language,
        "identity": identity_name(spec.identity),
        "avatar_voice": spec.avatar_voice.label,
        "other_voice": spec.other_voice.label,
        "other_gain_db": spec.other_gain_db,
        "magnitude": spec.magnitude,
        "n_turns": len(turns),
        "speak_fraction": round(float((conv.states == SPEAK).mean()), 4),
        "source": "espeak-ng synthetic conversation",
    }
    return row


def build_dataset(out: str | Path, n_clips: int = DEFAULT_CLIPS, seed: int = DEFAULT_SEED,
          synth: Synthesizer = synthesize, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Generate the whole dataset folder ``out``; returns the manifest (also written last).

    Generator outputs of an earlier run (``clips/conv*.flac``/``.npz``) that this run does not make
    are removed, so the folder always matches its manifest; other files are left alone.
    """
    out = Path(out)
    specs = plan_clips(n_clips, seed)
    rows = []
    for spec in specs:
        row = build_clip(spec, out, seed, synth)
        rows.append(row)
        if progress is not None:
            progress(f"{spec.id}: {row['duration']:.1f} s, {row['n_turns']} turns")
    split = assign_splits([r["id"] for r in rows], seed)
    manifest = pd.DataFrame(rows)
    manifest.insert(1, "split", [split[i] for i in manifest["id"]])
    _remove_stale(clips_dir(out), set(manifest["id"]))
    write_readme(out / "README.md", manifest, n_clips, seed)
    test = manifest[manifest["split"] == "test"]
    with atomic_path(out / TEST_JOBS) as tmp:  # `ehead generate --jobs` for the test split
        pd.DataFrame({"audio": [f"clips/{i}.flac" for i in test["id"]],
                      "states": [f"clips/{i}.csv" for i in test["id"]]}).to_csv(tmp, index=False)
    write_manifest(out, manifest)
    return manifest


def _remove_stale(clips: Path, keep: set[str]) -> None:
    """Delete generator outputs (``conv*.flac``/``.npz``/``.csv``) from an earlier run that this run did not make."""
    for path in sorted(clips.glob("conv*")):
        if path.suffix in (".flac", ".npz", ".csv") and path.stem not in keep:
            path.unlink()


def command_line(out: str | Path, n_clips: int, seed: int) -> str:
    """The command that regenerates a folder."""
    extra = "".join(f" --{k} {v}" for k, v, d in (("clips", n_clips, DEFAULT_CLIPS), ("seed", seed, DEFAULT_SEED))
                    if v != d)
    return f"python -m ehead_cli.sampledata --out {out}{extra}"


def write_readme(path: Path, manifest: pd.DataFrame, n_clips: int, seed: int) -> None:
    """Write the folder's README: how it was made, that it is synthetic, licence, split, totals."""
    by_split = manifest.groupby("split").agg(clips=("id", "size"), seconds=("duration", "sum"))
    split_lines = "\n".join(
        f"| {s} | {int(by_split.loc[s, 'clips'])} | {by_split.loc[s, 'seconds']:.1f} |"
        for s in ("train", "val", "test") if s in by_split.index)
    frames = int(manifest["n_frames"].sum())
    speak = float((manifest["speak_fraction"] * manifest["n_frames"]).sum() / frames)
    equal = int((manifest["other_gain_db"] > QUIET_GAIN_DB[1]).sum())
    languages = ", ".join(f"{lang} ({int(n)})" for lang, n in manifest["language"].value_counts().sort_index().items())
    text = f"""# Sample data (synthetic)

A small dataset folder in the layout `ehead train --data` reads (`manifest.csv`, `clips/<id>.flac`,
`clips/<id>.npz`), made entirely by this project's generator. **Everything here is synthetic:** the
speech is espeak-ng text-to-speech of sentences written for this project, the motion is procedural
motion of the built-in head; no real person's voice, face or recording is included.

Regenerate it (needs the `espeak-ng` program, e.g. `apt-get install espeak-ng`; well under a minute
on two CPU cores; the same seed and espeak-ng version give byte-identical files; this copy was made
with {espeak_version()}):

    {command_line(path.parent, n_clips, seed)}

## What a clip is
A conversation in one language between the avatar and an interlocutor, alternating turns of one or
two sentences with short pauses. `clips/<id>.flac` (16 kHz mono, 16-bit) is the single stream the
avatar hears: both voices mixed. The interlocutor uses a different voice; in {equal} of the {len(manifest)}
clips it is as loud as the avatar (within 1.5 dB), in the others 6-16 dB quieter, so loudness alone
does not tell the roles apart. `clips/<id>.npz` holds `motion` (T, 115) at 25 fps,
`shape` (300,) of the clip's identity and `states` (T,) (+1 while the avatar's turn lasts, -1
otherwise); `clips/<id>.csv` holds the same states as `start,end,state` segments, the file
`ehead generate --states` takes.

The motion (`ehead_cli/sampledata/motion.py`) is a deterministic function of the stored audio, the
states and a per-clip seed: while speaking, the jaw opening (0-0.18 rad) and the lips (parting,
rounding, stretch) follow the energy and spectral centroid of the audio within +-1 frame,
syllable by syllable, and stressed syllables start small nods, turns and brow raises; while listening
the mouth stays closed whatever the audio: it closes within a few frames of the avatar's last
syllable, then rests with the lips slightly apart (jaw up to 0.025 rad, a function of the time since
the avatar last spoke), and opens a little in the 3 frames before the avatar's next turn; with a
slow nod when the interlocutor
pauses and a gentle smile; blinks, gaze saccades, slow head drift and translation sway in both
states. Identities (8 shapes, each with its own avatar voice) and the per-clip motion magnitude
(`magnitude` column, 0.5-1.6) vary between clips; within a clip the head's rotation and translation
also follow a speed profile (x0.25 to x3, a new factor every 2-6 s), so the windows of one clip span a
wide range of head-motion speeds.

## Manifest columns
`id`, `split`, `duration` (s), `n_frames` (25 fps), `language`, `identity`, `avatar_voice` and
`other_voice` (espeak-ng variant/pitch/speed), `other_gain_db` (interlocutor level relative to the
avatar), `magnitude`, `n_turns`, `speak_fraction` (fraction of frames with state +1), `source`.

## Totals
- {len(manifest)} clips, {manifest['duration'].sum() / 60:.1f} minutes, {frames} frames at 25 fps
- clip length {manifest['duration'].min():.1f}-{manifest['duration'].max():.1f} s
- {100 * speak:.0f} % of the frames are speaking (state +1)
- languages (clips): {languages}

| split | clips | seconds |
|---|---|---|
{split_lines}

Splits are by clip, from a seeded shuffle (seed {seed}). `{TEST_JOBS}` lists the test split as an
`ehead generate --jobs` file (audio and states of each test clip).

## Dyadic conversations (`dyadic/`)
`dyadic/` is a second, separate dataset for the listener family: 44 synthetic speaker-listener
dyads (11.8 minutes) whose listener nods on the speaker's stressed syllables, answers the speaker's
smiles and has one of six per-identity response styles. Its own README says what is in it and how it
was made (`python -m ehead_cli.sampledata.dyadic --out sample_data/dyadic`).

## Licence
The sentences, the generator and the motion are part of this project and under its licence
(Apache-2.0). The audio is output of espeak-ng (GPL-3.0-or-later); the GPL covers the program, not
speech it produces, and no part of espeak-ng itself is included here.
"""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
