"""``ehead export``: the format registry and the one call that loads a motion NPZ and writes a format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.export import layouts, meshes
from ehead_cli.face import FlameModel, flame_configured, load_face_model, load_flame
from ehead_cli.io.motionfile import Motion, load_motion


@dataclass(frozen=True)
class Format:
    """One export format.

    suffix:  what ``--out`` must end with ("" for the folder formats)
    default: the output next to the motion file when ``--out`` is not given; ``{stem}`` is its stem
    note:    what the layout cannot hold, printed after every export ("" when it holds everything)
    """

    name: str
    what: str
    suffix: str
    default: str
    note: str = ""


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("artalk", "ARTalk motion tensor (T, 106)", ".pt", "{stem}_motions.pt",
           "artalk keeps expression, head rotation and jaw; eye poses, translation, shape and states are "
           "not written"),
    Format("gagavatar", "GAGAvatar tracker per-frame dict (smoothed.pkl)", ".pkl", "{stem}/smoothed.pkl",
           "gagavatar: transform_matrix holds the motion's translation as the NPZ has it (x5, PyTorch3D view "
           "axes), no camera is added; states are not written"),
    Format("dualtalk", "DualTalk exp (T, 50) + pose (T, 6) + shape (T, 100)", ".npz", "{stem}_dualtalk.npz",
           "dualtalk keeps expression 1-50 of 100 and shape 1-100 of 300; eye poses, translation and states "
           "are not written, and DualTalk turns the head about FLAME's neck joint, not its root"),
    Format("flame-npz", "FLAME parameters expr/pose/shape/trans/fps", ".npz", "{stem}_flame.npz",
           "flame-npz has no eye poses or states; they are not written"),
    Format("vertices-npz", "vertices (T, V, 3), faces, fps of the face model", ".npz", "{stem}_vertices.npz"),
    Format("obj", "a folder of one OBJ mesh per frame", "", "{stem}_obj"),
    Format("ply", "a folder of one binary PLY mesh per frame", "", "{stem}_ply"),
    Format("gltf", "glTF 2.0 binary of the built-in head: 100 expression morph targets, a jaw/eye/neck skin, "
           "the animation", ".glb", "{stem}.glb",
           "gltf holds no audio (glTF has none: --audio writes it beside the .glb) and no states"),
)}


USES_FLAME = ("gagavatar", "vertices-npz", "obj", "ply")  # the formats --flame (or EHEAD_FLAME) changes


@dataclass(frozen=True)
class ExportResult:
    """path: what was written; what: a few words on it; notes: what the layout could not hold."""

    path: Path
    what: str
    notes: tuple[str, ...]


def output_path(motion: Path, fmt: Format, out: Path | None) -> Path:
    """``out`` checked against ``fmt``, or the format's default next to ``motion``."""
    if out is None:
        return motion.parent / fmt.default.format(stem=motion.stem)
    if fmt.suffix and out.suffix.lower() != fmt.suffix:
        raise ConfigError(f"--out {out}: the {fmt.name} format writes a {fmt.suffix} file ({fmt.what})")
    return out


def export_motion(motion: str | Path, fmt: str, out: str | Path | None = None, flame: str | None = None,
                  progress: meshes.Progress | None = None, audio: str | Path | None = None) -> ExportResult:
    """Write the motion NPZ ``motion`` in format ``fmt`` to ``out`` (default: next to it).

    ``flame`` (or ``EHEAD_FLAME``) picks FLAME for the mesh formats (else the built-in head) and, for
    gagavatar, the root joint the rotation pivot is moved from. ``progress(done, total)`` counts frames
    of the mesh formats. ``audio`` (gltf only): the clip's audio, written beside the .glb as a 16 kHz
    WAV cut or padded to the motion's length.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    spec = FORMATS[fmt]
    if flame and fmt not in USES_FLAME:
        raise ConfigError(f"--flame is used only by --format {', '.join(USES_FLAME)}; {fmt} has no mesh or pivot")
    if audio is not None and fmt != "gltf":
        raise ConfigError(f"--audio is used only by --format gltf (glTF has no audio track); {fmt} takes none")
    motion = Path(motion)
    m = load_motion(motion)
    target = output_path(motion, spec, None if out is None else Path(out))
    if target.resolve() == motion.resolve():
        raise ConfigError(f"--out {target}: is the input motion file; choose another path")
    notes = [spec.note] if spec.note else []
    what = f"{m.n_frames} frames, {spec.what}"
    if fmt == "flame-npz":
        layouts.write_flame_npz(target, m)
    elif fmt == "artalk":
        layouts.write_artalk(target, m, str(motion))
    elif fmt == "dualtalk":
        layouts.write_dualtalk(target, m, str(motion))
    elif fmt == "gltf":
        from ehead_cli.export.gltf import write_gltf

        info = write_gltf(target, m)
        what = (f"{m.n_frames} frames at {m.fps:g} fps of the built-in head ({info.n_vertices} vertices, "
                f"{info.n_targets} morph targets), {info.n_bytes / 1e6:.1f} MB")
        if audio is not None:
            wav = target.with_suffix(".wav")
            _write_clip_audio(Path(audio), wav, m)
            what += f", audio in {wav}"
    elif fmt == "gagavatar":
        face = load_flame(flame) if flame_configured(flame) else None
        if face is None:
            notes.append("gagavatar: rotation pivot left at the FLAME origin (give --flame for ehead's FLAME "
                         "root joint)")
        layouts.write_gagavatar(target, m, video=motion.stem, face=face)
    else:
        face = load_face_model(flame)
        if fmt == "vertices-npz":
            meshes.write_vertices_npz(target, face, m, progress)
        else:
            meshes.write_mesh_folder(target, face, m, fmt, progress)
        kind = "FLAME" if isinstance(face, FlameModel) else "the built-in head"
        what = f"{m.n_frames} frames of {kind} ({face.n_vertices} vertices, metres), {spec.what}"
    return ExportResult(target, what, tuple(notes))


def _write_clip_audio(audio: Path, wav: Path, m: Motion) -> None:
    """``audio`` as a 16 kHz WAV at ``wav``, cut or padded to the clip's frames (a mismatch of more than
    the states' tolerance is an error, as for ``ehead render --audio``)."""
    import numpy as np

    from ehead_cli import checks
    from ehead_cli.io.audio import load_audio, save_wav
    from ehead_cli.layout import SAMPLE_RATE, tolerance_frames

    wave = load_audio(audio)
    n = int(round(m.n_frames / m.fps * SAMPLE_RATE))
    if abs(len(wave) - n) > SAMPLE_RATE / m.fps * tolerance_frames():
        raise InputError(f"{audio}: lasts {checks.seconds(len(wave) / SAMPLE_RATE)} but the motion has "
                         f"{m.n_frames} frames ({checks.seconds(m.n_frames / m.fps)})")
    save_wav(wav, np.pad(wave, (0, max(0, n - len(wave))))[:n])
