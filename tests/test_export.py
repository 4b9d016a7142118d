"""``ehead export``: every layout's keys, shapes and dtypes; the lossless round trips; GAGAvatar's camera
matrix on known rotations, against ARTalk's conversion and against ehead's FLAME vertices; mesh files
that parse back to the face model's own vertices; one-line errors for bad input."""

from __future__ import annotations

import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.export import FORMATS, export_motion
from ehead_cli.export.layouts import (
    FLAME_NPZ_KEYS,
    flame_npz_to_motion,
    gagavatar_transform,
    load_flame_npz,
    to_flame_npz,
)
from ehead_cli.face import BuiltinHead, load_flame
from ehead_cli.face.flame import ENV_FLAME, ENV_FLAME_LANDMARKS, ENV_FLAME_MASKS
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.layout import EXPR, EYES, JAW, LISTEN, ROT, TRANS
from ehead_cli.prepare.gagavatar import load_gagavatar_track, read_track_pickle

T = 5
F = np.diag([-1.0, 1.0, -1.0])  # PyTorch3D view axes -> ehead's camera axes


@pytest.fixture(autouse=True)
def _no_flame_env(monkeypatch):
    for name in (ENV_FLAME, ENV_FLAME_LANDMARKS, ENV_FLAME_MASKS):
        monkeypatch.delenv(name, raising=False)


def _motion(seed: int = 0, fps: float = 25) -> Motion:
    rng = np.random.default_rng(seed)
    motion = rng.normal(0, 0.1, (T, 115)).astype(np.float32)
    motion[:, ROT] = rng.normal(0, 0.4, (T, 3))  # turns large enough that a wrong pivot shows
    motion[:, TRANS] = rng.normal(0, 0.02, (T, 3)) + np.array([0.0, 0.0, -1.5])
    return Motion(motion, rng.normal(0, 1, 300), np.where(np.arange(T) % 2, 1, -1), fps)


@pytest.fixture
def clip(tmp_path) -> Path:
    save_motion(tmp_path / "clip.npz", _motion())
    return tmp_path / "clip.npz"


@pytest.fixture
def flame_file(tmp_path) -> Path:
    """A tiny random model with FLAME's arrays and kinematic tree, as an .npz the real loader reads."""
    rng = np.random.default_rng(1)
    V = 40
    J = rng.random((5, V)) * (rng.random((5, V)) < 0.3)
    J[:, 0] += 1e-3
    path = tmp_path / "flame.npz"
    np.savez(path, v_template=rng.normal(0, 0.05, (V, 3)), shapedirs=rng.normal(0, 1e-3, (V, 3, 400)),
             posedirs=rng.normal(0, 1e-3, (V, 3, 36)), J_regressor=J / J.sum(1, keepdims=True),
             kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]), weights=rng.dirichlet(np.ones(5), V),
             f=rng.integers(0, V, (60, 3)))
    return path


def _vertices(face, m: Motion, t: int) -> np.ndarray:
    """Frame t on its own through the face model: (V, 3)."""
    with torch.no_grad():
        return face(torch.from_numpy(m.shape)[None], torch.from_numpy(m.motion[t:t + 1]))[0].numpy()


# --- coefficient layouts ----------------------------------------------------------------------------

def test_flame_npz_layout_and_round_trips(clip, tmp_path):
    m = load_motion(clip)
    out = export_motion(clip, "flame-npz").path
    assert out == tmp_path / "clip_flame.npz"
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert sorted(arrays) == sorted(FLAME_NPZ_KEYS)
    shapes = {"expr": (T, 100), "pose": (T, 6), "shape": (300,), "trans": (T, 3), "fps": ()}
    for key, shape in shapes.items():
        assert arrays[key].shape == shape and arrays[key].dtype == np.float32, key
    np.testing.assert_array_equal(arrays["pose"], np.concatenate([m.motion[:, ROT], m.motion[:, JAW]], 1))
    np.testing.assert_array_equal(arrays["expr"], m.motion[:, EXPR])
    np.testing.assert_array_equal(arrays["trans"], m.motion[:, TRANS])
    # flame-npz -> ehead -> flame-npz is exact; the ehead side has no eyes and listens throughout
    back = load_flame_npz(out)
    assert (back.motion[:, EYES] == 0).all() and (back.states == LISTEN).all() and back.fps == 25
    again = to_flame_npz(back)
    for key in FLAME_NPZ_KEYS:
        np.testing.assert_array_equal(again[key], arrays[key], err_msg=key)
    # and ehead -> flame-npz -> ehead keeps everything but the eyes and states
    kept = m.motion.copy()
    kept[:, EYES] = 0
    np.testing.assert_array_equal(back.motion, kept)
    np.testing.assert_array_equal(back.shape, m.shape)


def test_flame_npz_reader_names_the_bad_key(tmp_path):
    good = to_flame_npz(_motion())
    with pytest.raises(InputError, match="missing key.*trans"):
        flame_npz_to_motion({k: v for k, v in good.items() if k != "trans"}, "x.npz")
    with pytest.raises(InputError, match="'pose' must have shape"):
        flame_npz_to_motion({**good, "pose": good["pose"][:, :3]}, "x.npz")


def test_artalk_layout(clip, tmp_path):
    m = load_motion(clip)
    out = export_motion(clip, "artalk", tmp_path / "a.pt").path
    motion = torch.load(out, weights_only=True)  # how ARTalk reads a style motion
    assert isinstance(motion, torch.Tensor) and motion.shape == (T, 106) and motion.dtype == torch.float32
    np.testing.assert_array_equal(motion[:, :100].numpy(), m.motion[:, EXPR])
    np.testing.assert_array_equal(motion[:, 100:103].numpy(), m.motion[:, ROT])
    np.testing.assert_array_equal(motion[:, 103:106].numpy(), m.motion[:, JAW])


def test_dualtalk_layout(clip, tmp_path):
    m = load_motion(clip)
    out = export_motion(clip, "dualtalk").path
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert sorted(arrays) == ["exp", "pose", "shape"]
    for key, shape in {"exp": (T, 50), "pose": (T, 6), "shape": (T, 100)}.items():
        assert arrays[key].shape == shape and arrays[key].dtype == np.float32, key
    np.testing.assert_array_equal(arrays["exp"], m.motion[:, :50])
    np.testing.assert_array_equal(arrays["pose"][:, :3], m.motion[:, ROT])  # DualTalk's "neck" slot
    np.testing.assert_array_equal(arrays["pose"][:, 3:], m.motion[:, JAW])
    np.testing.assert_array_equal(arrays["shape"], np.repeat(m.shape[None, :100], T, 0))


@pytest.mark.parametrize("fmt", ["artalk", "dualtalk"])
def test_fixed_rate_layouts_refuse_another_rate(tmp_path, fmt):
    save_motion(tmp_path / "c30.npz", _motion(fps=30))
    with pytest.raises(InputError, match="30 fps.*25 fps") as err:
        export_motion(tmp_path / "c30.npz", fmt)
    assert "\n" not in str(err.value) and not list(tmp_path.glob("c30_*"))


def test_gagavatar_layout_round_trips_through_the_importer(clip, tmp_path):
    m = load_motion(clip)
    out = export_motion(clip, "gagavatar").path
    assert out == tmp_path / "clip" / "smoothed.pkl"
    frames = read_track_pickle(out)  # ehead's numpy-only unpickler
    assert list(frames) == [f"clip_{i}" for i in range(T)]
    shapes = {"shapecode": (300,), "expcode": (100,), "posecode": (6,), "eyecode": (6,), "transform_matrix": (3, 4)}
    for frame in frames.values():
        assert sorted(frame) == sorted(shapes)
        for key, shape in shapes.items():
            assert frame[key].shape == shape and frame[key].dtype == np.float32, key
        assert (frame["posecode"][:3] == 0).all()  # the tracker keeps the head rotation in the camera
    np.testing.assert_array_equal(frames["clip_3"]["eyecode"], m.motion[3, EYES])
    # the file names no numpy module but numpy itself (numpy.ndarray, numpy.dtype): numpy 1 and 2 read it
    strings = {arg for op, arg, _ in pickletools.genops(out.read_bytes()) if op.name.endswith("UNICODE")}
    assert {"numpy", "ndarray", "dtype"} <= strings and not any("numpy." in s for s in strings)
    assert frames["clip_0"]["expcode"].flags.writeable
    track = load_gagavatar_track(out.parent)  # what `ehead prepare --tracker gagavatar` does
    np.testing.assert_allclose(track.motion, m.motion, atol=2e-6)
    np.testing.assert_array_equal(track.shape, m.shape)


def test_gagavatar_transform_on_known_rotations():
    trans = np.array([[0.1, 0.2, -1.5]])
    identity = gagavatar_transform(np.zeros((1, 3)), trans)[0]
    np.testing.assert_allclose(identity[:, :3], F, atol=1e-7)  # a frontal head: R = F
    np.testing.assert_allclose(identity[:, 3], [-0.5, 1.0, 7.5], atol=1e-6)  # 5 F trans: 7.5 in front
    quarter = gagavatar_transform(np.array([[0.0, np.pi / 2, 0.0]]), trans)[0, :, :3]
    np.testing.assert_allclose(quarter, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-7)
    # the nose (+z in FLAME) of a head turned toward the subject's left points to PyTorch3D's -x,
    # image right
    np.testing.assert_allclose(np.array([0.0, 0.0, 1.0]) @ quarter, [-1, 0, 0], atol=1e-7)


def test_artalk_rotation_frame_is_gagavatars():
    """ARTalk drives GAGAvatar's camera from its rotation vector with transform_emoca_to_p3d
    (xg-chu/ARTalk artalk/GAGAvatar/models.py): negate x and z, to a matrix, times F, inverted. For the
    same vector that gives the matrix ehead writes, so ARTalk's [100:103] is ehead's rotation."""
    aa = torch.from_numpy(np.random.default_rng(2).normal(0, 0.6, (16, 3)))
    flipped = aa * torch.tensor([-1.0, 1.0, -1.0], dtype=aa.dtype)
    emoca = torch.linalg.inv(axis_angle_to_matrix(flipped) @ torch.from_numpy(F))
    ours = gagavatar_transform(aa.numpy(), np.zeros((16, 3)))[:, :, :3]
    np.testing.assert_allclose(ours, emoca.numpy(), atol=1e-6)


def test_gagavatar_with_flame_reproduces_ehead_flame_vertices(clip, flame_file):
    """GAGAvatar poses FLAME with global 0 and moves it by its camera: 5 p @ R + T. Brought back to
    ehead's axes and metres, that equals ehead's FLAME (which turns about its root joint) exactly."""
    m = load_motion(clip)
    face = load_flame(flame_file)
    out = export_motion(clip, "gagavatar", flame=str(flame_file))
    assert not any("pivot" in n for n in out.notes)
    frames = read_track_pickle(out.path)
    for t in (0, 3):
        f = frames[f"clip_{t}"]
        still = m.motion[t:t + 1].copy()
        still[:, ROT], still[:, TRANS], still[:, JAW] = 0, 0, f["posecode"][3:]
        with torch.no_grad():
            p = face(torch.from_numpy(f["shapecode"])[None], torch.from_numpy(still))[0].double().numpy()
        R, Tv = f["transform_matrix"][:, :3].astype(np.float64), f["transform_matrix"][:, 3].astype(np.float64)
        view = 5.0 * p @ R + Tv
        np.testing.assert_allclose(view @ F / 5.0, _vertices(face, m, t), atol=2e-6)
    # and without FLAME the pivot stays at the origin, which the command says
    assert any("pivot" in n for n in export_motion(clip, "gagavatar").notes)


# --- mesh sequences ---------------------------------------------------------------------------------

def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    v, f = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            v.append([float(x) for x in line.split()[1:]])
        elif line.startswith("f "):
            f.append([int(x) - 1 for x in line.split()[1:]])
    return np.array(v, np.float32), np.array(f)


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    lines = head.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    n_v = int(next(ln for ln in lines if ln.startswith("element vertex")).split()[-1])
    n_f = int(next(ln for ln in lines if ln.startswith("element face")).split()[-1])
    v = np.frombuffer(body[:n_v * 12], "<f4").reshape(n_v, 3)
    rec = np.frombuffer(body[n_v * 12:], dtype=[("n", "u1"), ("i", "<i4", (3,))])
    assert len(rec) == n_f and (rec["n"] == 3).all()
    return v, rec["i"]


@pytest.mark.parametrize("kind", ["obj", "ply"])
def test_mesh_folders_parse_back_to_the_builtin_heads_vertices(clip, tmp_path, kind):
    m, face = load_motion(clip), BuiltinHead()
    result = export_motion(clip, kind)
    files = sorted(result.path.iterdir())
    assert [p.name for p in files] == [f"{t:06d}.{kind}" for t in range(T)]
    for t in (0, T - 1):
        v, f = (_read_obj if kind == "obj" else _read_ply)(files[t])
        np.testing.assert_array_equal(f, face.faces.numpy())
        np.testing.assert_allclose(v, _vertices(face, m, t), atol=1e-6)
    assert "built-in head" in result.what


def test_vertices_npz_on_flame(clip, flame_file, tmp_path):
    m, face = load_motion(clip), load_flame(flame_file)
    out = export_motion(clip, "vertices-npz", tmp_path / "v.npz", flame=str(flame_file)).path
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["faces", "fps", "vertices"]
        vertices, faces, fps = z["vertices"], z["faces"], z["fps"]
    assert vertices.shape == (T, 40, 3) and vertices.dtype == np.float32
    assert faces.shape == (60, 3) and faces.dtype == np.int32 and fps == 25
    np.testing.assert_array_equal(faces, face.faces.numpy())
    for t in range(T):
        np.testing.assert_allclose(vertices[t], _vertices(face, m, t), atol=1e-6)


def test_mesh_folder_replaces_an_earlier_export_but_nothing_else(tmp_path, flame_file):
    save_motion(tmp_path / "long.npz", _motion())
    short = _motion()
    short.motion, short.states = short.motion[:2], short.states[:2]
    save_motion(tmp_path / "short.npz", short)
    folder = tmp_path / "meshes"
    export_motion(tmp_path / "long.npz", "ply", folder, flame=str(flame_file))
    export_motion(tmp_path / "short.npz", "ply", folder, flame=str(flame_file))
    assert sorted(p.name for p in folder.iterdir()) == ["000000.ply", "000001.ply"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--out .*notes.txt"):
        export_motion(tmp_path / "long.npz", "obj", folder, flame=str(flame_file))
    assert (folder / "notes.txt").read_text() == "mine"


# --- the command ------------------------------------------------------------------------------------

def test_command_writes_and_notes_what_the_layout_drops(clip, tmp_path):
    code, out, err = run_cli("export", str(clip), "--format", "dualtalk", "--out", str(tmp_path / "d.npz"))
    assert code == 0 and (tmp_path / "d.npz").is_file()
    assert f"wrote {tmp_path / 'd.npz'}" in out
    assert err.strip().count("\n") == 0 and err.startswith("note: dualtalk keeps expression 1-50")


@pytest.mark.parametrize("case", ["not-npz", "not-motion", "unknown-format", "wrong-suffix", "unwritable",
                                  "flame-unused"])
def test_bad_input_is_one_line(clip, tmp_path, case):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    args, needle = {
        "not-npz": ([str(blocker), "--format", "flame-npz"], "not an NPZ file"),
        "not-motion": ([str(export_motion(clip, "dualtalk").path), "--format", "artalk"], "missing key"),
        "unknown-format": ([str(clip), "--format", "fbx"], "--format must be one of artalk"),
        "wrong-suffix": ([str(clip), "--format", "artalk", "--out", str(tmp_path / "a.npz")], ".pt file"),
        "unwritable": ([str(clip), "--format", "flame-npz", "--out", str(blocker / "x.npz")], "--out"),
        "flame-unused": ([str(clip), "--format", "artalk", "--flame", str(blocker)], "--flame is used only"),
    }[case]
    code, out, err = run_cli("export", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and needle in err, err
    assert "Traceback" not in err


def test_every_format_is_in_the_help_and_the_doc():
    code, out, _ = run_cli("export", "--help")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    assert code == 0
    for name in FORMATS:
        assert name in out and f"`{name}`" in doc, name
