"""Per-frame mesh sequences of a motion clip on a face model (the built-in head or FLAME).

Vertices come from the face model itself (``FaceModel.forward``), a chunk of frames per call, so a
file's frame t is the model's output for motion frame t. Units: metres; axes: FLAME's (x toward the
subject's left, y up, the face looking toward +z); the motion's translation is included.

- ``vertices-npz``: one NPZ, ``vertices`` (T, V, 3) float32, ``faces`` (F, 3) int32, ``fps`` () float32;
  written frame chunk by frame chunk, so a long clip never sits in memory whole.
- ``obj`` / ``ply``: a folder with one file per frame, ``000000.obj`` ... (six digits or more);
  OBJ as text with 9 significant digits (float32 exactly), PLY as binary little-endian float32 / int32.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ehead_cli.errors import ConfigError
from ehead_cli.face.base import FaceModel
from ehead_cli.io.atomic import atomic_dir, atomic_path
from ehead_cli.io.motionfile import Motion

CHUNK_FRAMES = 128  # frames per face-model call: FLAME's blended transforms are (N, 5023, 12) floats
MESH_KINDS = ("obj", "ply")
_FRAME_FILE = re.compile(r"^\d{6,}\.(obj|ply)$")

Progress = Callable[[int, int], None]  # (frames done, frames in all)


def vertex_chunks(face: FaceModel, m: Motion, chunk: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
    """Yield the clip's vertices, (n, V, 3) float32 per chunk of up to ``chunk`` frames, in order."""
    like = face.vertex_colors
    shape = torch.from_numpy(m.shape).to(like)[None]  # (1, 300)
    with torch.no_grad():
        for start in range(0, m.n_frames, chunk):
            motion = torch.from_numpy(m.motion[start:start + chunk]).to(like)  # (n, 115)
            yield face(shape, motion).float().cpu().numpy()


def frame_name(t: int, kind: str) -> str:
    return f"{t:06d}.{kind}"


def obj_text(vertices: np.ndarray, face_lines: str, header: str = "") -> str:
    """One Wavefront OBJ: (V, 3) vertices, then ``face_lines`` from ``obj_face_lines``."""
    v = "v %.9g %.9g %.9g\n" * len(vertices) % tuple(vertices.reshape(-1).tolist())
    return f"{header}{v}{face_lines}"


def obj_face_lines(faces: np.ndarray) -> str:
    """(F, 3) 0-based triangles -> OBJ ``f`` lines (1-based), shared by every frame."""
    return "f %d %d %d\n" * len(faces) % tuple((faces.reshape(-1) + 1).tolist())


def ply_header(n_vertices: int, n_faces: int, comment: str) -> bytes:
    return ("ply\nformat binary_little_endian 1.0\n"
            f"comment {comment}\n"
            f"element vertex {n_vertices}\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n").encode("ascii")


def ply_face_block(faces: np.ndarray) -> bytes:
    """(F, 3) triangles -> PLY face records (a uint8 count of 3, then three little-endian int32)."""
    rec = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rec["n"], rec["i"] = 3, faces
    return rec.tobytes()


def _faces(face: FaceModel) -> np.ndarray:
    return face.faces.cpu().numpy().astype(np.int32)  # (F, 3)


def write_vertices_npz(path: str | Path, face: FaceModel, m: Motion, progress: Progress | None = None) -> None:
    """``vertices`` (T, V, 3) float32, ``faces`` (F, 3) int32, ``fps`` () float32, streamed into the NPZ."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (m.n_frames, face.n_vertices, 3)}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("vertices.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            done = 0
            for v in vertex_chunks(face, m):
                f.write(np.ascontiguousarray(v, "<f4").tobytes())
                done += len(v)
                if progress is not None:
                    progress(done, m.n_frames)
        for name, value in (("faces", _faces(face)), ("fps", np.float32(m.fps))):
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)


def check_mesh_folder(folder: Path, flag: str = "--out") -> None:
    """A mesh folder may replace only nothing, an empty folder or an earlier mesh export (frame files)."""
    if folder.is_file():
        raise ConfigError(f"{flag} {folder}: is a file; obj and ply exports write a folder of frame files")
    if folder.is_dir():
        others = [p.name for p in folder.iterdir() if not _FRAME_FILE.match(p.name)]
        if others:
            raise ConfigError(f"{flag} {folder}: folder holds other files ({others[0]}, ...); give a new or "
                              f"empty folder, or an earlier obj/ply export to replace")


def write_mesh_folder(folder: str | Path, face: FaceModel, m: Motion, kind: str,
                      progress: Progress | None = None) -> None:
    """One ``kind`` file (obj or ply) per frame in ``folder``, which appears whole or not at all."""
    if kind not in MESH_KINDS:
        raise ValueError(f"kind must be one of {MESH_KINDS}, got {kind!r}")
    folder = Path(folder)
    check_mesh_folder(folder)
    faces = _faces(face)
    shared = obj_face_lines(faces) if kind == "obj" else ply_face_block(faces)
    about = f"ehead export, face model {face.name}, metres, FLAME axes (y up, face toward +z)"
    with atomic_dir(folder) as tmp:
        t = 0
        for chunk in vertex_chunks(face, m):
            for v in chunk:
                comment = f"frame {t} of {m.n_frames} at {m.fps:g} fps; {about}"
                if kind == "obj":
                    (tmp / frame_name(t, kind)).write_text(obj_text(v, shared, f"# {comment}\n"))
                else:
                    body = ply_header(len(v), len(faces), comment) + np.ascontiguousarray(v, "<f4").tobytes()
                    (tmp / frame_name(t, kind)).write_bytes(body + shared)
                t += 1
            if progress is not None:
                progress(t, m.n_frames)
