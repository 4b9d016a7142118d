"""FLAME loader: a tiny random model written in the official pickle layout (chumpy ``Ch`` arrays,
a scipy ``csc_matrix`` J_regressor, Python-2 style numpy pickles) and loaded through the real code."""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from ehead_cli.errors import AssetError
from ehead_cli.face.flame import ENV_FLAME, ENV_FLAME_LANDMARKS, ENV_FLAME_MASKS, FlameModel, load_flame
from ehead_cli.face.pickle_compat import load_pickle
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, EYE_LEFT, JAW, MOTION_DIM, N_SHAPE, ROT, TRANS

V, F = 40, 60
STATIC = np.arange(12)  # vertices skinned to the neck only, with no pose correctives
ENVS = (ENV_FLAME, ENV_FLAME_LANDMARKS, ENV_FLAME_MASKS)


@pytest.fixture(autouse=True)
def _no_flame_env(monkeypatch):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(5), size=V)
    weights[STATIC] = np.eye(5)[1]
    posedirs = rng.normal(0, 1e-3, (V, 3, 36))
    posedirs[STATIC] = 0.0
    J_regressor = rng.random((5, V)) * (rng.random((5, V)) < 0.3)
    J_regressor[:, 0] += 1e-3  # every joint regresses from at least one vertex
    J_regressor /= J_regressor.sum(1, keepdims=True)
    return {
        "v_template": rng.normal(0, 0.05, (V, 3)),
        "shapedirs": rng.normal(0, 1e-3, (V, 3, 400)),
        "posedirs": posedirs,
        "J_regressor": J_regressor,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": weights,
        "f": rng.integers(0, V, (F, 3)).astype(np.uint32),
        "J": rng.normal(0, 0.05, (5, 3)),
    }


def _py2_ndarray(arr: np.ndarray):
    """Reduce an ndarray the way numpy under Python 2 did: its raw data as a (latin-1) str."""
    from ehead_cli.face.pickle_compat import _reconstruct

    arr = np.ascontiguousarray(arr)
    state = (1, arr.shape, arr.dtype, False, arr.tobytes().decode("latin1"))
    return _reconstruct, (np.ndarray, (0,), "b"), state


def _write_pkl(path: Path, obj, monkeypatch, py2: bool) -> None:
    """Pickle ``obj`` with ``chumpy.ch.Ch`` stand-ins whose state matches real chumpy's."""
    with open(path, "wb") as f:
        if py2:
            pickler = pickle.Pickler(f, protocol=2)
            pickler.dispatch_table = {np.ndarray: _py2_ndarray}
            pickler.dump(obj)
        else:
            pickle.dump(obj, f, protocol=4)
    if py2:  # the module names numpy 1 and old scipy wrote
        data = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        path.write_bytes(data.replace(b"scipy.sparse._csc", b"scipy.sparse.csc"))


@pytest.fixture
def fake_chumpy(monkeypatch):
    """A throwaway ``chumpy.ch.Ch`` registered while writing, pickled with chumpy's own state."""
    ch_module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            # chumpy's __getstate__ keeps the instance dict minus the weak caches
            self.__dict__.update({"_dirty_vars": {"x"}, "_itr": None, "_depends_on_deps": {},
                                  "_make_dense": False, "_make_sparse": False, "x": np.asarray(x)})

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_module.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_module)
    return Ch


def _write_flame_folder(folder: Path, arrays, Ch, monkeypatch, py2: bool = True) -> Path:
    """generic_model.pkl + landmark_embedding.npy + FLAME_masks.pkl, as the official files."""
    folder.mkdir(parents=True, exist_ok=True)
    model = {k: arrays[k] for k in ("kintree_table", "J", "f")}
    for k in ("v_template", "shapedirs", "posedirs", "weights"):
        model[k] = Ch(arrays[k])
    model["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    model["bs_style"], model["bs_type"] = "lbs", "lrotmin"
    _write_pkl(folder / "generic_model.pkl", model, monkeypatch, py2)

    rng = np.random.default_rng(1)
    lmk = {"full_lmk_faces_idx": rng.integers(0, F, (1, 68)),
           "full_lmk_bary_coords": rng.dirichlet(np.ones(3), size=(1, 68)),
           "static_lmk_faces_idx": rng.integers(0, F, (51,))}
    np.save(folder / "landmark_embedding.npy", lmk)
    masks = {"lips": np.array([20, 21, 22]), "forehead": np.array([1, 2, 3]), "eye_region": np.array([3, 4]),
             "left_eyeball": np.array([30, 31]), "neck": np.array([5])}
    _write_pkl(folder / "FLAME_masks.pkl", masks, monkeypatch, py2)
    return folder


def _motion(n: int, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(n, MOTION_DIM, generator=torch.Generator().manual_seed(seed)) * scale


def _reference_lbs(a: dict, shape: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Per-vertex FLAME in float64 numpy, written from the paper's equations."""
    v = a["v_template"] + a["shapedirs"][:, :, :300] @ shape + a["shapedirs"][:, :, 300:] @ motion[EXPR]
    J = a["J_regressor"] @ v
    aa = [motion[ROT], np.zeros(3), motion[JAW], motion[103:106], motion[106:109]]
    R = axis_angle_to_matrix(torch.tensor(np.stack(aa))).numpy()
    feat = np.concatenate([(R[j] - np.eye(3)).ravel() for j in range(1, 5)])
    v = v + a["posedirs"] @ feat
    parents = [-1, 0, 1, 1, 1]
    G = []
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = R[j]
        local[:3, 3] = J[j] - (J[parents[j]] if j else 0)
        G.append(local if j == 0 else G[parents[j]] @ local)
    out = np.zeros_like(v)
    for i in range(len(v)):
        T = sum(a["weights"][i, j] * G[j] @ np.block([[np.eye(3), -J[j][:, None]], [np.zeros((1, 3)), 1]])
                for j in range(5))
        out[i] = T[:3, :3] @ v[i] + T[:3, 3]
    return out + motion[TRANS]


@pytest.mark.parametrize("py2", [True, False], ids=["py2-layout", "py3-pickle"])
def test_flame_pkl_matches_reference(tmp_path, fake_chumpy, monkeypatch, py2):
    a = _arrays()
    folder = _write_flame_folder(tmp_path / "flame", a, fake_chumpy, monkeypatch, py2)
    model = load_flame(folder)
    assert isinstance(model, FlameModel) and model.n_vertices == V
    shape = torch.randn(N_SHAPE, generator=torch.Generator().manual_seed(3)) * 0.5
    motion = _motion(3)
    got = model(shape, motion).double().numpy()
    for i in range(3):
        want = _reference_lbs(a, shape.double().numpy(), motion[i].double().numpy())
        np.testing.assert_allclose(got[i], want, atol=2e-6)


def test_zero_pose_is_template_plus_blendshapes(tmp_path, fake_chumpy, monkeypatch):
    a = _arrays()
    model = load_flame(_write_flame_folder(tmp_path, a, fake_chumpy, monkeypatch) / "generic_model.pkl")
    shape = np.random.default_rng(5).normal(size=N_SHAPE)
    motion = np.zeros(MOTION_DIM)
    motion[EXPR] = np.random.default_rng(6).normal(size=100)
    want = a["v_template"] + a["shapedirs"][:, :, :300] @ shape + a["shapedirs"][:, :, 300:] @ motion[EXPR]
    got = model(torch.tensor(shape, dtype=torch.float32), torch.tensor(motion, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_jaw_moves_only_jaw_weighted_vertices(tmp_path, fake_chumpy, monkeypatch):
    a = _arrays()
    model = load_flame(_write_flame_folder(tmp_path, a, fake_chumpy, monkeypatch))
    zero = torch.zeros(MOTION_DIM)
    jaw = zero.clone()
    jaw[JAW] = torch.tensor([0.3, 0.05, 0.0])
    shape = torch.zeros(N_SHAPE)
    moved = (model(shape, jaw) - model(shape, zero)).norm(dim=-1)
    assert torch.all(moved[STATIC] < 1e-7)
    jaw_weighted = np.flatnonzero(a["weights"][:, 2] > 0.05)
    assert torch.all(moved[jaw_weighted] > 1e-5)


def _pairwise(v: torch.Tensor) -> torch.Tensor:
    return (v[:, None] - v[None]).norm(dim=-1)


def test_global_rotation_is_rigid(tmp_path, fake_chumpy, monkeypatch):
    model = load_flame(_write_flame_folder(tmp_path, _arrays(), fake_chumpy, monkeypatch))
    shape = torch.randn(N_SHAPE) * 0.5
    base = _motion(1, seed=2)[0]
    base[ROT] = 0.0
    base[TRANS] = 0.0
    turned = base.clone()
    turned[ROT] = torch.tensor([0.2, -0.5, 0.1])
    turned[TRANS] = torch.tensor([0.01, -0.02, 0.03])
    v0, v1 = model(shape, base), model(shape, turned)
    torch.testing.assert_close(_pairwise(v0), _pairwise(v1), atol=1e-6, rtol=0)
    assert (v1 - v0).abs().max() > 1e-3


def test_npz_variant_gives_identical_vertices(tmp_path, fake_chumpy, monkeypatch):
    a = _arrays()
    model_pkl = load_flame(_write_flame_folder(tmp_path / "pkl", a, fake_chumpy, monkeypatch))
    npz = tmp_path / "flame.npz"
    np.savez(npz, **{k: a[k] for k in ("v_template", "shapedirs", "posedirs", "J_regressor",
                                       "kintree_table", "weights", "f")})
    model_npz = load_flame(npz)
    shape, motion = torch.randn(4, N_SHAPE) * 0.3, _motion(4, seed=7)
    torch.testing.assert_close(model_npz(shape, motion), model_pkl(shape, motion), atol=0, rtol=0)


def test_landmarks_and_masks(tmp_path, fake_chumpy, monkeypatch):
    folder = _write_flame_folder(tmp_path, _arrays(), fake_chumpy, monkeypatch)
    model = load_flame(folder)
    verts = model(torch.zeros(N_SHAPE), _motion(2, seed=4))  # (2, V, 3)
    lmk = model.landmarks(verts)
    emb = np.load(folder / "landmark_embedding.npy", allow_pickle=True).item()  # our own test file
    tri = model.faces[torch.as_tensor(emb["full_lmk_faces_idx"][0])]
    bary = torch.as_tensor(emb["full_lmk_bary_coords"][0], dtype=torch.float32)
    torch.testing.assert_close(lmk, (verts[:, tri] * bary[None, :, :, None]).sum(2))
    assert model.mask("lips").tolist() == [20, 21, 22]
    assert model.mask("upper_face").tolist() == [1, 2, 3, 4]
    colors = model.vertex_colors
    assert not torch.equal(colors[20], colors[0]) and torch.equal(colors[0], colors[10])


def test_missing_landmarks_and_masks_name_their_env(tmp_path, fake_chumpy, monkeypatch):
    folder = _write_flame_folder(tmp_path, _arrays(), fake_chumpy, monkeypatch)
    (folder / "landmark_embedding.npy").unlink()
    (folder / "FLAME_masks.pkl").unlink()
    model = load_flame(folder)
    verts = model(torch.zeros(N_SHAPE), torch.zeros(MOTION_DIM))
    assert torch.isfinite(verts).all()
    with pytest.raises(AssetError, match=ENV_FLAME_LANDMARKS):
        model.landmarks(verts)
    with pytest.raises(AssetError, match=ENV_FLAME_MASKS):
        model.mask("lips")


def test_env_variables_locate_the_files(tmp_path, fake_chumpy, monkeypatch):
    folder = _write_flame_folder(tmp_path / "a", _arrays(), fake_chumpy, monkeypatch)
    other = tmp_path / "b"
    other.mkdir()
    (folder / "landmark_embedding.npy").rename(other / "lmk.npy")
    monkeypatch.setenv(ENV_FLAME, str(folder))
    monkeypatch.setenv(ENV_FLAME_LANDMARKS, str(other / "lmk.npy"))
    model = load_flame()
    assert model.lmk_faces is not None and model.mask("lips").numel() == 3
    monkeypatch.setenv(ENV_FLAME_MASKS, str(other / "missing.pkl"))
    with pytest.raises(AssetError, match=ENV_FLAME_MASKS):
        load_flame()


def test_flags_locate_the_files_before_the_variables(tmp_path, fake_chumpy, monkeypatch):
    from ehead_cli.errors import ConfigError
    from ehead_cli.face.loading import load_face_model

    folder = _write_flame_folder(tmp_path / "a", _arrays(), fake_chumpy, monkeypatch)
    other = tmp_path / "b"
    other.mkdir()
    (folder / "landmark_embedding.npy").rename(other / "lmk.npy")
    (folder / "FLAME_masks.pkl").rename(other / "masks.pkl")
    monkeypatch.setenv(ENV_FLAME_LANDMARKS, str(tmp_path / "not-this.npy"))  # the flag wins over it
    model = load_face_model(folder, landmarks=other / "lmk.npy", masks=other / "masks.pkl")
    assert model.lmk_faces is not None and model.mask("lips").numel() == 3
    with pytest.raises(AssetError, match="from --flame-masks"):
        load_flame(folder, other / "lmk.npy", tmp_path / "gone.pkl")
    with pytest.raises(ConfigError, match="--flame-landmarks is for FLAME: pass --flame"):
        load_face_model(None, landmarks=other / "lmk.npy")


def test_missing_model_names_flag_and_env(tmp_path):
    for arg in (None, tmp_path / "nope.pkl", tmp_path):
        with pytest.raises(AssetError) as err:
            load_flame(arg)
        msg = str(err.value)
        assert "\n" not in msg and "--flame" in msg and ENV_FLAME in msg


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("func, arg", [(os.system, "echo pwned"), (eval, "1 + 1")], ids=["os.system", "eval"])
def test_unpickler_refuses_other_globals(tmp_path, func, arg):
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Evil(func, arg)}, protocol=2))
    for loader in (load_pickle, load_flame):
        with pytest.raises(AssetError) as err:
            loader(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and "refused global" in msg


def test_truncated_pickle_is_an_asset_error(tmp_path, fake_chumpy, monkeypatch):
    folder = _write_flame_folder(tmp_path, _arrays(), fake_chumpy, monkeypatch)
    path = folder / "generic_model.pkl"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(AssetError, match="generic_model.pkl"):
        load_flame(path)


def test_wrong_layout_is_an_asset_error(tmp_path):
    a = _arrays()
    a["shapedirs"] = a["shapedirs"][:, :, :50]
    np.savez(tmp_path / "small.npz", **a)
    with pytest.raises(AssetError, match="shapedirs"):
        load_flame(tmp_path / "small.npz")


def test_eye_pose_moves_eye_weighted_vertices(tmp_path, fake_chumpy, monkeypatch):
    a = _arrays()
    model = load_flame(_write_flame_folder(tmp_path, a, fake_chumpy, monkeypatch))
    zero = torch.zeros(MOTION_DIM)
    eye = zero.clone()
    eye[EYE_LEFT] = torch.tensor([0.0, 0.4, 0.0])
    moved = (model(torch.zeros(N_SHAPE), eye) - model(torch.zeros(N_SHAPE), zero)).norm(dim=-1)
    assert torch.all(moved[STATIC] < 1e-7)
    assert torch.all(moved[a["weights"][:, 3] > 0.05] > 1e-6)


def test_landmark_npz_variant(tmp_path, fake_chumpy, monkeypatch):
    folder = _write_flame_folder(tmp_path, _arrays(), fake_chumpy, monkeypatch)
    emb = np.load(folder / "landmark_embedding.npy", allow_pickle=True).item()  # our own test file
    np.savez(tmp_path / "lmk.npz", lmk_faces_idx=emb["full_lmk_faces_idx"][0],
             lmk_bary_coords=emb["full_lmk_bary_coords"][0])
    monkeypatch.setenv(ENV_FLAME_LANDMARKS, str(tmp_path / "lmk.npz"))
    from_npz = load_flame(folder)
    monkeypatch.delenv(ENV_FLAME_LANDMARKS)
    from_npy = load_flame(folder)
    verts = from_npy(torch.zeros(N_SHAPE), _motion(1, seed=9))
    torch.testing.assert_close(from_npz.landmarks(verts), from_npy.landmarks(verts))
    np.savez(tmp_path / "bad.npz", lmk_faces_idx=np.zeros(10, np.int64), lmk_bary_coords=np.zeros((10, 3)))
    monkeypatch.setenv(ENV_FLAME_LANDMARKS, str(tmp_path / "bad.npz"))
    with pytest.raises(AssetError, match="bad.npz"):
        load_flame(folder)
