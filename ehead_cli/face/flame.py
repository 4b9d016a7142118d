"""FLAME, read from the user's licensed file (FLAME 2020 ``generic_model.pkl`` or FLAME 2023
``flame2023.pkl``, or an ``.npz`` with the same arrays).

The model (Li et al. 2017): ``v = LBS(v_template + S shape + E expr + P(pose), pose, W)`` with
5 joints in FLAME's order: 0 root (global), 1 neck, 2 jaw, 3 left eye, 4 right eye; parents
(-, 0, 1, 1, 1). ``shapedirs`` (V, 3, 400) holds 300 identity then 100 expression directions;
``posedirs`` (V, 3, 36) the pose correctives driven by ``R_j - I`` of joints 1-4.

How a motion frame (``ehead_cli.layout``) drives the joints:

    EXPR      -> the 100 expression coefficients
    ROT       -> joint 0, the global root: a rigid rotation about the root joint
    (none)    -> joint 1, the neck: always zero (the motion layout has no neck slot)
    JAW       -> joint 2, the jaw
    EYE_LEFT  -> joint 3, EYE_RIGHT -> joint 4 (FLAME's left/right, i.e. the subject's)
    TRANS     -> added to every vertex after skinning (metres)

Units: metres, y up, the face looks toward +z, x toward the subject's left.

Where the files come from: ``--flame PATH`` or ``EHEAD_FLAME`` names the model file or a folder
holding ``generic_model.pkl`` or ``flame2023.pkl`` and, optionally, DECA's
``landmark_embedding.npy`` (the 68 landmarks) and ``FLAME_masks.pkl`` (vertex regions) by those
names; ``EHEAD_FLAME_LANDMARKS`` / ``EHEAD_FLAME_MASKS`` point at them elsewhere. Without them
the model still gives vertices, and ``landmarks()`` / ``mask()`` raise ``AssetError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ehead_cli.errors import AssetError
from ehead_cli.face.base import N_LANDMARKS, FaceModel
from ehead_cli.face.pickle_compat import load_npy, load_pickle, to_array
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, N_EXPR, N_SHAPE, ROT, TRANS

ENV_FLAME = "EHEAD_FLAME"
ENV_FLAME_LANDMARKS = "EHEAD_FLAME_LANDMARKS"
ENV_FLAME_MASKS = "EHEAD_FLAME_MASKS"
MODEL_FILENAMES = ("generic_model.pkl", "flame2023.pkl")  # looked for in this order in a folder
LANDMARKS_FILENAME = "landmark_embedding.npy"
MASKS_FILENAME = "FLAME_masks.pkl"

N_JOINTS = 5
PARENTS = (-1, 0, 1, 1, 1)  # root, neck, jaw, left eye, right eye
NECK, JAW_JOINT = 1, 2
N_POSE_CORRECTIVES = (N_JOINTS - 1) * 9  # (R_j - I) of every joint but the root

SKIN_RGB = (0.84, 0.66, 0.56)
LIPS_RGB = (0.70, 0.38, 0.38)
EYEBALL_RGB = (0.92, 0.90, 0.86)
UPPER_FACE_REGIONS = ("forehead", "eye_region")
EYEBALL_REGIONS = ("left_eyeball", "right_eyeball")


@dataclass(frozen=True)
class FlamePaths:
    """The FLAME files found for one configuration; ``None`` where an optional file is absent."""

    model: Path
    landmarks: Path | None
    masks: Path | None


def resolve_flame_paths(flame: str | Path | None = None, landmarks: str | Path | None = None,
                        masks: str | Path | None = None) -> FlamePaths:
    """Find the model and the optional landmark/mask files from ``flame`` or ``EHEAD_FLAME``;
    ``landmarks`` / ``masks`` (``--flame-landmarks`` / ``--flame-masks``) override their variables and
    the files next to the model."""
    origin = "--flame"
    if flame is None or str(flame) == "":
        flame, origin = os.environ.get(ENV_FLAME, ""), ENV_FLAME
    if not flame:
        raise AssetError(f"no FLAME model configured: pass --flame PATH or set {ENV_FLAME} to "
                         f"{' or '.join(MODEL_FILENAMES)} (or the folder holding it)")
    path = Path(flame).expanduser()
    if path.is_dir():
        found = [path / name for name in MODEL_FILENAMES if (path / name).is_file()]
        if not found:
            raise AssetError(f"{path}: holds neither {' nor '.join(MODEL_FILENAMES)}; "
                             f"point --flame / {ENV_FLAME} at the FLAME model file")
        path = found[0]
    elif not path.is_file():
        raise AssetError(f"{path}: FLAME model not found (from {origin}); pass --flame PATH or set "
                         f"{ENV_FLAME} to the FLAME model file or its folder")
    if path.suffix.lower() not in (".pkl", ".npz"):
        raise AssetError(f"{path}: a FLAME model must be a .pkl or .npz file (from {origin})")
    return FlamePaths(path, _optional(path.parent, LANDMARKS_FILENAME, ENV_FLAME_LANDMARKS, landmarks,
                                      "--flame-landmarks"),
                      _optional(path.parent, MASKS_FILENAME, ENV_FLAME_MASKS, masks, "--flame-masks"))


def _optional(folder: Path, filename: str, env: str, value: str | Path | None, flag: str) -> Path | None:
    """The flag's ``value``, else ``env`` when set (either must exist), else ``folder/filename`` when
    present, else None."""
    override, origin = (str(value), flag) if value not in (None, "") else (os.environ.get(env, ""), env)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise AssetError(f"{path}: not found (from {origin})")
        return path
    path = folder / filename
    return path if path.is_file() else None


# --- file readers --------------------------------------------------------------------------------

def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz (no pickled objects); AssetError naming the file otherwise."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise AssetError(f"{path}: not a readable {what} .npz ({err})") from None


def read_flame_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a FLAME ``.pkl`` (chumpy-era pickle) or ``.npz``.

    Returns float32 ``v_template`` (V, 3), ``shapedirs`` (V, 3, 300), ``exprdirs`` (V, 3, 100),
    ``posedirs`` (V, 3, 36), ``J_regressor`` (5, V) dense, ``weights`` (V, 5); int64 ``f`` (F, 3).
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        raw = _read_npz(path, "FLAME")
    else:
        raw = load_pickle(path)
        if not isinstance(raw, dict):
            raise AssetError(f"{path}: not a FLAME model (expected a dict of arrays, got {type(raw).__name__})")
    need = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")
    missing = [k for k in need if k not in raw]
    if missing:
        raise AssetError(f"{path}: not a FLAME model, missing {', '.join(missing)}")
    a = {k: to_array(raw[k]) for k in need}

    def bad(what: str) -> AssetError:
        return AssetError(f"{path}: invalid FLAME model: {what}")

    v = a["v_template"]
    if v.ndim != 2 or v.shape[1] != 3:
        raise bad(f"v_template has shape {v.shape}, expected (V, 3)")
    V = v.shape[0]
    sd = a["shapedirs"]
    if sd.ndim != 3 or sd.shape[:2] != (V, 3) or sd.shape[2] < N_SHAPE + N_EXPR:
        raise bad(f"shapedirs has shape {sd.shape}, expected ({V}, 3, {N_SHAPE + N_EXPR})")
    pd = a["posedirs"]
    if pd.shape != (V, 3, N_POSE_CORRECTIVES):
        raise bad(f"posedirs has shape {pd.shape}, expected ({V}, 3, {N_POSE_CORRECTIVES})")
    jr = a["J_regressor"]
    if jr.shape != (N_JOINTS, V):
        raise bad(f"J_regressor has shape {jr.shape}, expected ({N_JOINTS}, {V})")
    w = a["weights"]
    if w.shape != (V, N_JOINTS):
        raise bad(f"weights has shape {w.shape}, expected ({V}, {N_JOINTS})")
    kt = a["kintree_table"]
    if kt.shape != (2, N_JOINTS):
        raise bad(f"kintree_table has shape {kt.shape}, expected (2, {N_JOINTS})")
    parents = tuple(-1 if (p < 0 or p >= N_JOINTS) else int(p) for p in kt[0].astype(np.int64))
    if parents != PARENTS:
        raise bad(f"kinematic tree parents {parents}, expected FLAME's {PARENTS}")
    f = a["f"].astype(np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or f.size == 0 or f.min() < 0 or f.max() >= V:
        raise bad(f"faces f have shape {f.shape} or indices outside 0..{V - 1}")
    out = {
        "v_template": v, "shapedirs": sd[:, :, :N_SHAPE], "exprdirs": sd[:, :, N_SHAPE:N_SHAPE + N_EXPR],
        "posedirs": pd, "J_regressor": jr, "weights": w,
    }
    out = {k: np.ascontiguousarray(x, dtype=np.float32) for k, x in out.items()}
    for k, x in out.items():
        if not np.isfinite(x).all():
            raise bad(f"{k} holds non-finite values")
    out["f"] = f
    return out


def read_landmark_embedding(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """DECA's ``landmark_embedding.npy`` (``full_lmk_faces_idx`` (1, 68), ``full_lmk_bary_coords``
    (1, 68, 3)) or an ``.npz`` with ``lmk_faces_idx`` (68,) and ``lmk_bary_coords`` (68, 3)
    -> int64 (68,) triangle indices, float32 (68, 3) barycentric weights."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        keys = ("lmk_faces_idx", "lmk_bary_coords")
        data = _read_npz(path, "landmark")
    else:
        keys = ("full_lmk_faces_idx", "full_lmk_bary_coords")
        data = load_npy(path)
        if not isinstance(data, dict):
            raise AssetError(f"{path}: not a FLAME landmark embedding (expected a dict, "
                             f"got {type(data).__name__})")
    if not all(k in data for k in keys):
        raise AssetError(f"{path}: not a FLAME landmark embedding, needs {' and '.join(keys)}")
    faces = to_array(data[keys[0]]).reshape(-1).astype(np.int64)
    bary = to_array(data[keys[1]]).reshape(-1, 3).astype(np.float32)
    if faces.shape != (N_LANDMARKS,) or bary.shape != (N_LANDMARKS, 3) or not np.isfinite(bary).all():
        raise AssetError(f"{path}: expected {N_LANDMARKS} landmarks with 3 barycentric weights, got "
                         f"{faces.shape[0]} and {bary.shape}")
    return faces, bary


def read_flame_masks(path: str | Path) -> dict[str, np.ndarray]:
    """The official ``FLAME_masks.pkl`` (region name -> vertex indices) -> int64 index arrays."""
    path = Path(path)
    data = load_pickle(path)
    if not isinstance(data, dict) or not data:
        raise AssetError(f"{path}: not FLAME_masks.pkl (expected a dict of vertex index arrays)")
    masks = {str(k): to_array(v).reshape(-1).astype(np.int64) for k, v in data.items()}
    missing = [k for k in ("lips", *UPPER_FACE_REGIONS) if k not in masks]
    if missing:
        raise AssetError(f"{path}: FLAME masks lack the regions {', '.join(missing)}")
    return masks


# --- the model -----------------------------------------------------------------------------------

class FlameModel(FaceModel):
    """FLAME as a ``FaceModel``; see the module docstring for the joint mapping.

    arrays: as returned by ``read_flame_arrays``
    landmarks: (faces (68,), bary (68, 3)) or None
    masks: region name -> vertex indices (``FLAME_masks.pkl``) or None
    source: names the files in error messages
    """

    name = "flame"

    def __init__(self, arrays: dict[str, np.ndarray], landmarks: tuple[np.ndarray, np.ndarray] | None = None,
                 masks: dict[str, np.ndarray] | None = None, source: str = "FLAME") -> None:
        super().__init__()
        self.source = source
        V = arrays["v_template"].shape[0]
        t = torch.from_numpy
        self._register_blendshapes(arrays["v_template"], arrays["shapedirs"], arrays["exprdirs"])
        # pose_feature index is joint-major then row-major 3x3, as FLAME/SMPL flatten (R_j - I)
        self.register_buffer("posedirs", t(arrays["posedirs"].reshape(V * 3, N_POSE_CORRECTIVES).T.copy()))
        self.register_buffer("J_regressor", t(arrays["J_regressor"]))  # (5, V)
        self.register_buffer("lbs_weights", t(arrays["weights"]))  # (V, 5)
        self.register_buffer("faces", t(arrays["f"]))
        n_faces = arrays["f"].shape[0]

        if landmarks is not None:
            lmk_faces, lmk_bary = landmarks
            if lmk_faces.min() < 0 or lmk_faces.max() >= n_faces:
                raise AssetError(f"{source}: landmark triangle indices outside 0..{n_faces - 1}; "
                                 f"the landmark file ({ENV_FLAME_LANDMARKS}) does not match this model")
            self.register_buffer("lmk_faces", t(lmk_faces.astype(np.int64)))
            self.register_buffer("lmk_bary", t(lmk_bary.astype(np.float32)))
        else:
            self.register_buffer("lmk_faces", None)
            self.register_buffer("lmk_bary", None)

        colors = np.tile(np.asarray(SKIN_RGB, np.float32), (V, 1))
        self._has_masks = masks is not None
        if masks is not None:
            for name, idx in masks.items():
                if idx.size and (idx.min() < 0 or idx.max() >= V):
                    raise AssetError(f"{source}: mask {name!r} has vertex indices outside 0..{V - 1}; "
                                     f"the mask file ({ENV_FLAME_MASKS}) does not match this model")
            lips = np.unique(masks["lips"])
            upper = np.unique(np.concatenate([masks[k] for k in UPPER_FACE_REGIONS]))
            self.register_buffer("mask_lips", t(lips))
            self.register_buffer("mask_upper_face", t(upper))
            colors[lips] = LIPS_RGB
            for region in EYEBALL_REGIONS:
                if region in masks:
                    colors[masks[region]] = EYEBALL_RGB
        self.register_buffer("vertex_colors", t(colors))

    def mask(self, name: str) -> torch.Tensor:
        if not self._has_masks and name in self.mask_names:
            raise AssetError(f"FLAME vertex masks are not configured: set {ENV_FLAME_MASKS} to "
                             f"{MASKS_FILENAME} or put it next to the FLAME model")
        return super().mask(name)

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        if self.lmk_faces is None:
            raise AssetError(f"the FLAME landmark embedding is not configured: set {ENV_FLAME_LANDMARKS} "
                             f"to {LANDMARKS_FILENAME} or put it next to the FLAME model")
        return super().landmarks(vertices)

    def joints(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 100) -> (N, 5, 3) rest-pose joint positions."""
        return torch.einsum("jv,nvc->njc", self.J_regressor, self._shaped(shape, expression))

    def _vertices(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        N = shape.shape[0]
        dtype = self.v_template.dtype
        shape, motion = shape.to(dtype), motion.to(dtype)
        v_shaped = self._shaped(shape, motion[:, EXPR])  # (N, V, 3)
        J = torch.einsum("jv,nvc->njc", self.J_regressor, v_shaped)  # (N, 5, 3)

        neck = torch.zeros_like(motion[:, JAW])
        pose = torch.stack([motion[:, ROT], neck, motion[:, JAW], motion[:, EYE_LEFT], motion[:, EYE_RIGHT]], 1)
        R = axis_angle_to_matrix(pose)  # (N, 5, 3, 3)
        eye3 = torch.eye(3, dtype=dtype, device=R.device)
        pose_feature = (R[:, 1:] - eye3).reshape(N, N_POSE_CORRECTIVES)
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(N, -1, 3)

        # world transform of each joint along the chain: G_j = G_parent(j) [R_j | J_j - J_parent(j)]
        G_R: list[torch.Tensor] = []
        G_t: list[torch.Tensor] = []
        for j, p in enumerate(PARENTS):
            if p < 0:
                G_R.append(R[:, j])
                G_t.append(J[:, j])
            else:
                G_R.append(G_R[p] @ R[:, j])
                G_t.append(G_t[p] + (G_R[p] @ (J[:, j] - J[:, p])[..., None])[..., 0])
        Rw = torch.stack(G_R, 1)  # (N, 5, 3, 3)
        # skinning transform maps rest-pose points: x -> Rw (x - J) + G_t
        tw = torch.stack(G_t, 1) - (Rw @ J[..., None])[..., 0]  # (N, 5, 3)
        A = torch.cat([Rw.reshape(N, N_JOINTS, 9), tw], -1)  # (N, 5, 12)
        T = torch.einsum("vj,njk->nvk", self.lbs_weights, A)  # (N, V, 12) blended transforms
        Tr, Tt = T[..., :9].view(N, -1, 3, 3), T[..., 9:]
        verts = (Tr @ v_posed[..., None])[..., 0] + Tt
        return verts + motion[:, None, TRANS]


def load_flame(flame: str | Path | None = None, landmarks: str | Path | None = None,
               masks: str | Path | None = None) -> FlameModel:
    """Load FLAME from ``flame`` (file or folder) or ``EHEAD_FLAME``, with landmarks and masks
    when they are found (see the module docstring and ``resolve_flame_paths``)."""
    paths = resolve_flame_paths(flame, landmarks, masks)
    arrays = read_flame_arrays(paths.model)
    landmarks = read_landmark_embedding(paths.landmarks) if paths.landmarks else None
    masks = read_flame_masks(paths.masks) if paths.masks else None
    return FlameModel(arrays, landmarks, masks, source=str(paths.model))
