"""The tracker-bias variant of the sample data: where Stage II's correction can be measured.

    python -m ehead_cli.sampledata --tracker-bias --from sample_data --out runs/biased

Monocular face trackers give biased pseudo-labels (paper 3.4); Stage II corrects them with the video
frames. This variant gives the synthetic conversations of a clean sample-data folder (``--from``)
three typical tracker errors, with the truth kept beside them:

* the jaw (all three jaw coefficients) attenuated by a third and two frames late:
  jaw'(t) = JAW_GAIN x jaw(t - JAW_LAG_FRAMES), the first frames repeating frame 0;
* expression noise: every expression coefficient + N(0, EXPR_NOISE^2), independently per frame;
* pose jitter: head rotation + N(0, ROT_JITTER^2) rad and translation + N(0, TRANS_JITTER^2) m per
  component and frame.

The noise is a fixed function of (``seed``, clip id). The frames are the built-in head rendered
from the CLEAN motion by the default 256 px renderer (the view ``ehead generate --size 256`` draws),
stored in the dataset's frames format (``ehead_cli.io.frames``). Every clip shows one person: the
shape of identity ``identity`` (default id00), so that a person-specific neural avatar can be fitted
on the frames (``ehead avatar fit --data``).

Output folder:

    manifest.csv, clips/<id>.flac | .npz (biased labels) | .csv (states) | .frames.mp4 | .frames.json
    clean/          the same conversations with the clean motion: the ground truth for ehead eval
                    (manifest.csv, clips/<id>.npz | .flac)
    test_jobs.csv   the test split as an ``ehead generate --jobs`` file
    README.md       what this is

Audio files are hard links to the clean folder's where the file system allows, copies elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.dataset import clips_dir, find_audio, motion_path, read_manifest, write_manifest
from ehead_cli.io.frames import FRAME_SIZE, write_frames
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.layout import EXPR, JAW, MOTION_FPS, ROT, TRANS
from ehead_cli.sampledata.build import TEST_JOBS, derive_seed

JAW_GAIN = 2.0 / 3.0  # the tracker sees two thirds of each opening
JAW_LAG_FRAMES = 2  # ... 80 ms late
EXPR_NOISE = 0.05  # per coefficient and frame (the clean coefficients span about [0, 1.2])
ROT_JITTER = 0.005  # rad (0.3 degrees) per component and frame
TRANS_JITTER = 0.0005  # m (0.5 mm) per component and frame
CLEAN_DIR = "clean"
DEFAULT_IDENTITY = "id00"


def bias_labels(motion: np.ndarray, seed: int) -> np.ndarray:
    """(T, 115) clean motion -> (T, 115) float32 labels with the tracker's errors (module docstring)."""
    clean = np.asarray(motion, np.float32)
    rng = np.random.default_rng(seed)
    out = clean.copy()
    late = np.concatenate([np.repeat(clean[:1, JAW], JAW_LAG_FRAMES, 0), clean[:-JAW_LAG_FRAMES, JAW]])[:len(clean)]
    out[:, JAW] = JAW_GAIN * late
    out[:, EXPR] += rng.normal(0.0, EXPR_NOISE, out[:, EXPR].shape)
    out[:, ROT] += rng.normal(0.0, ROT_JITTER, out[:, ROT].shape)
    out[:, TRANS] += rng.normal(0.0, TRANS_JITTER, out[:, TRANS].shape)
    return out.astype(np.float32)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_tracker_bias(clean: str | os.PathLike, out: str | os.PathLike, seed: int = 0,
                       identity: str = DEFAULT_IDENTITY, size: int = FRAME_SIZE,
                       progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Write the variant of dataset folder ``clean`` into ``out`` (module docstring); returns its manifest."""
    import torch

    from ehead_cli.face import BuiltinHead
    from ehead_cli.render import Renderer
    from ehead_cli.render.clip_camera import ClipCamera

    clean, out = Path(clean), Path(out)
    table = read_manifest(clean, flag="--from")
    if "identity" not in table.columns or identity not in set(table["identity"]):
        raise InputError(f"{clean}: no clip of identity {identity!r} to take the person's shape from (--identity)")
    if out.resolve() == clean.resolve():
        raise InputError(f"{out}: is the clean folder itself; write the variant elsewhere (--out)")
    first = table[table["identity"] == identity]["id"].iloc[0]
    shape = load_motion(motion_path(clean, first)).shape
    renderer = Renderer(BuiltinHead().eval(), size=size)
    camera = ClipCamera.from_camera(renderer.mesh.camera, size, size)
    clips, truth = clips_dir(out), clips_dir(out / CLEAN_DIR)
    rows = []
    for row in table.to_dict("records"):
        cid = row["id"]
        audio = find_audio(clips_dir(clean), cid)
        if audio is None:
            raise InputError(f"{clean}: clip {cid} has no audio file")
        m = load_motion(motion_path(clean, cid))
        labels = bias_labels(m.motion, derive_seed(seed, f"{cid}/tracker-bias"))
        save_motion(clips / f"{cid}.npz", Motion(labels, shape, m.states, MOTION_FPS))
        save_motion(truth / f"{cid}.npz", Motion(m.motion, shape, m.states, MOTION_FPS))
        _link(audio, clips / audio.name)
        _link(audio, truth / audio.name)
        states_csv = clips_dir(clean) / f"{cid}.csv"
        if states_csv.is_file():
            _link(states_csv, clips / states_csv.name)
        with torch.no_grad():
            write_frames(out, cid, renderer.iter_frames(shape, m.motion), camera)
        rows.append({**row, "identity": identity, "labels": "tracker-bias"})
        if progress is not None:
            progress(f"{cid}: {m.n_frames} frames")
    manifest = pd.DataFrame(rows)
    write_manifest(out / CLEAN_DIR, manifest.assign(labels="clean"))
    test = manifest[manifest["split"] == "test"]
    with atomic_path(out / TEST_JOBS) as tmp:
        pd.DataFrame({"audio": [find_audio(clips, i).relative_to(out).as_posix() for i in test["id"]],
                      "states": [f"clips/{i}.csv" for i in test["id"]]}).to_csv(tmp, index=False)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(_readme(clean, out, seed, identity, manifest), encoding="utf-8")
    write_manifest(out, manifest)
    return manifest


def command_line(clean: str | Path, out: str | Path, seed: int, identity: str) -> str:
    extra = (f" --seed {seed}" if seed else "") + (f" --identity {identity}" if identity != DEFAULT_IDENTITY else "")
    return f"python -m ehead_cli.sampledata --tracker-bias --from {clean} --out {out}{extra}"


def _readme(clean: Path, out: Path, seed: int, identity: str, manifest: pd.DataFrame) -> str:
    frames = int(manifest["n_frames"].sum())
    return f"""# Sample data with tracker-biased labels (synthetic)

Made from `{clean}` by

    {command_line(clean, out, seed, identity)}

The conversations of the sample data ({len(manifest)} clips, {frames} frames), every clip showing
one person (identity {identity}'s shape), with motion labels that carry a face tracker's errors:

- the jaw attenuated by a third and {JAW_LAG_FRAMES} frames late ({JAW_GAIN:.3f} x jaw(t - {JAW_LAG_FRAMES}));
- expression noise N(0, {EXPR_NOISE}^2) per coefficient and frame;
- pose jitter N(0, {ROT_JITTER}^2) rad (rotation) and N(0, {TRANS_JITTER}^2) m (translation) per component
  and frame.

`clips/<id>.frames.mp4` are the built-in head rendered from the clean motion at {FRAME_SIZE} px (the view
of `ehead generate --size {FRAME_SIZE}`), the frames Stage II trains on; `clean/` holds the clean motion,
the ground truth (`ehead eval --gt {out}/{CLEAN_DIR} --split test`). Everything is synthetic; the
licence is the sample data's.
"""
