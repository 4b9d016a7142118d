"""GAGAvatar tracker import: files written in the tracker's own pickle layout, converted to ours."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from ehead_cli.errors import InputError
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, EYES, JAW, MOTION_DIM, ROT, TRANS
from ehead_cli.prepare.gagavatar import load_gagavatar_track

FRONTAL = np.diag([-1.0, 1.0, -1.0])  # PyTorch3D R of a face looking straight into the camera


def _yawed(theta: float) -> np.ndarray:
    """Tracker R (row-vector, PyTorch3D view) for a head turned by theta about its vertical axis,
    written out by hand: our rotation Ry(theta), transposed, with PyTorch3D's x and z flipped."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[-c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, -c]])


def _frame(rng, R: np.ndarray, T: np.ndarray, jaw=(0.0, 0.0, 0.0)) -> dict[str, np.ndarray]:
    """One frame exactly as GAGAvatar_track's lightning_optimize stores it (float32 numpy)."""
    f32 = np.float32
    return {
        "bbox": np.array([0.2, 0.1, 0.8, 0.9], f32),
        "shapecode": rng.standard_normal(300).astype(f32),
        "expcode": rng.standard_normal(100).astype(f32),
        "posecode": np.concatenate([np.zeros(3), jaw]).astype(f32),
        "eyecode": rng.standard_normal(6).astype(f32) * 0.1,
        "transform_matrix": np.concatenate([R, T[:, None]], axis=1).astype(f32),
    }


def _write(path, frames: dict, protocol: int = pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(frames, f, protocol=protocol)
    return path


def test_known_pose_expression_jaw_and_eyes(tmp_path):
    rng = np.random.default_rng(0)
    yaw = 0.3
    frames = {  # inserted out of order; the video name contains '_' and 10 sorts after 9 numerically
        "my_clip_10": _frame(rng, _yawed(yaw), np.array([0.1, -0.2, 9.0]), jaw=(0.2, 0.0, 0.0)),
        "my_clip_9": _frame(rng, FRONTAL, np.array([0.0, 0.0, 9.0])),
    }
    track = load_gagavatar_track(_write(tmp_path / "optim.pkl", frames))

    assert track.keys == ["my_clip_9", "my_clip_10"]
    np.testing.assert_array_equal(track.frame_index, [9, 10])
    assert track.motion.shape == (2, MOTION_DIM) and track.motion.dtype == np.float32
    assert track.shape.shape == (300,) and track.shape.dtype == np.float32
    for row, key in enumerate(track.keys):
        np.testing.assert_array_equal(track.motion[row, EXPR], frames[key]["expcode"])
        np.testing.assert_array_equal(track.motion[row, JAW], frames[key]["posecode"][3:])
        np.testing.assert_array_equal(track.motion[row, EYES], frames[key]["eyecode"])
    np.testing.assert_allclose(track.motion[0, ROT], 0.0, atol=1e-6)  # frontal = rest pose
    np.testing.assert_allclose(track.motion[1, ROT], [0.0, yaw, 0.0], atol=1e-6)
    # camera 9 scaled units in front (PyTorch3D +z) = 1.8 m in front of ours (-z); x flips, y stays
    np.testing.assert_allclose(track.motion[0, TRANS], [0.0, 0.0, -1.8], atol=1e-6)
    np.testing.assert_allclose(track.motion[1, TRANS], [-0.02, -0.04, -1.8], atol=1e-6)
    np.testing.assert_allclose(track.motion[1, JAW], [0.2, 0.0, 0.0], atol=1e-7)


def test_rot_trans_reproduce_the_trackers_camera_space_vertices(tmp_path):
    """v_ours = R(ROT) v + TRANS must equal the tracker's p = 5 v @ R + T with x, z flipped, / 5."""
    rng = np.random.default_rng(1)
    aa = rng.standard_normal((4, 3)) * 0.4
    Rs = axis_angle_to_matrix(torch.from_numpy(aa)).numpy() @ FRONTAL
    Ts = rng.standard_normal((4, 3)) + np.array([0.0, 0.0, 9.0])
    frames = {f"v_{i}": _frame(rng, Rs[i], Ts[i]) for i in range(4)}
    track = load_gagavatar_track(_write(tmp_path / "t.pkl", frames))

    verts = rng.standard_normal((50, 3)) * 0.1  # FLAME-scale points (metres)
    for i in range(4):
        M = frames[f"v_{i}"]["transform_matrix"].astype(np.float64)
        p3d = (5.0 * verts) @ M[:, :3] + M[:, 3]
        expected = p3d * np.array([-1.0, 1.0, -1.0]) / 5.0
        R_ours = axis_angle_to_matrix(torch.from_numpy(track.motion[i, ROT].astype(np.float64))).numpy()
        got = verts @ R_ours.T + track.motion[i, TRANS]
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_shape_is_the_clip_median(tmp_path):
    rng = np.random.default_rng(2)
    frames = {f"c_{i}": _frame(rng, FRONTAL, np.array([0.0, 0.0, 9.0])) for i in range(3)}
    for i, f in enumerate(frames.values()):
        f["shapecode"] = np.full(300, [0.5, 2.0, -1.0][i], np.float32)
    track = load_gagavatar_track(_write(tmp_path / "t.pkl", frames))
    np.testing.assert_array_equal(track.shape, np.full(300, 0.5, np.float32))


def test_output_folder_prefers_smoothed(tmp_path):
    rng = np.random.default_rng(3)
    _write(tmp_path / "optim.pkl", {"a_0": _frame(rng, FRONTAL, np.array([0.0, 0.0, 9.0]))})
    _write(tmp_path / "smoothed.pkl", {"a_0": _frame(rng, FRONTAL, np.array([0.0, 0.0, 10.0]))})
    assert load_gagavatar_track(tmp_path).motion[0, TRANS][2] == pytest.approx(-2.0)


def test_numpy1_pickles_load(tmp_path):
    """Tracks written under numpy 1.x name numpy.core.multiarray; they must still load."""
    rng = np.random.default_rng(4)
    blob = pickle.dumps({"a_0": _frame(rng, FRONTAL, np.array([0.0, 0.0, 9.0]))}, protocol=2)
    if b"numpy._core.multiarray" in blob:
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "old.pkl").write_bytes(blob)
    assert load_gagavatar_track(tmp_path / "old.pkl").motion.shape == (1, MOTION_DIM)


def test_missing_field_is_a_one_line_input_error(tmp_path):
    rng = np.random.default_rng(5)
    frame = _frame(rng, FRONTAL, np.array([0.0, 0.0, 9.0]))
    del frame["eyecode"]
    path = _write(tmp_path / "bad.pkl", {"a_0": frame})
    with pytest.raises(InputError) as err:
        load_gagavatar_track(path)
    msg = str(err.value)
    assert str(path) in msg and "eyecode" in msg and "'a_0'" in msg and "\n" not in msg


def test_wrong_shape_and_several_videos_are_input_errors(tmp_path):
    rng = np.random.default_rng(6)
    frame = _frame(rng, FRONTAL, np.array([0.0, 0.0, 9.0]))
    frame["expcode"] = frame["expcode"][:50]
    with pytest.raises(InputError, match="expcode.*\\(50,\\)"):
        load_gagavatar_track(_write(tmp_path / "short.pkl", {"a_0": frame}))
    both = {"a_0": _frame(rng, FRONTAL, np.zeros(3)), "b_0": _frame(rng, FRONTAL, np.zeros(3))}
    path = _write(tmp_path / "two.pkl", both)
    with pytest.raises(InputError, match="2 videos"):
        load_gagavatar_track(path)
    assert load_gagavatar_track(path, video="b").keys == ["b_0"]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_with_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path / "evil.pkl", {"a_0": {"expcode": _Exploit(marker)}})
    with pytest.raises(InputError, match="refusing to load"):
        load_gagavatar_track(path)
    assert not marker.exists()
    with pytest.raises(InputError, match="not found"):
        load_gagavatar_track(tmp_path / "absent.pkl")


class _RootOnly(torch.nn.Module):
    """Stands in for FlameModel.joints: a root joint that moves a little with expression[0]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("j0", torch.tensor([0.003, -0.02, -0.03]))

    def joints(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        root = self.j0 + 0.001 * expression[:, :1]  # (N, 3)
        return torch.stack([root, torch.zeros_like(root)], 1)  # (N, 2, 3)


def test_root_joint_pivot_reproduces_the_tracker_with_global_pose(tmp_path):
    """With ``face=``, turning about J0 (as ehead's FLAME does) then adding TRANS equals the
    tracker's mesh: its FLAME global pose turns about J0, its transform about the origin."""
    rng = np.random.default_rng(7)
    R = axis_angle_to_matrix(torch.tensor([0.1, -0.3, 0.05], dtype=torch.float64)).numpy() @ FRONTAL
    frame = _frame(rng, R, np.array([0.2, 0.1, 9.0]))
    frame["posecode"][:3] = [0.05, 0.1, 0.0]  # non-zero global pose, which GAGAvatar never writes
    face = _RootOnly()
    track = load_gagavatar_track(_write(tmp_path / "t.pkl", {"a_0": frame}), face=face)

    f64 = {k: v.astype(np.float64) for k, v in frame.items()}
    J0 = face.joints(torch.zeros(1, 300), torch.from_numpy(frame["expcode"])[None])[0, 0].double().numpy()
    Rg = axis_angle_to_matrix(torch.from_numpy(f64["posecode"][:3])).numpy()
    verts = rng.standard_normal((30, 3)) * 0.1
    posed = (verts - J0) @ Rg.T + J0  # the tracker's FLAME with its global pose, metres
    M = f64["transform_matrix"]
    expected = ((5.0 * posed) @ M[:, :3] + M[:, 3]) * np.array([-1.0, 1.0, -1.0]) / 5.0
    R_ours = axis_angle_to_matrix(torch.from_numpy(track.motion[0, ROT].astype(np.float64))).numpy()
    got = (verts - J0) @ R_ours.T + J0 + track.motion[0, TRANS]
    np.testing.assert_allclose(got, expected, atol=1e-5)
