"""The built-in head as glTF 2.0 binary (``.glb``): 100 expression morph targets, a skin with the
neck, head, jaw and eye joints, and, given a motion clip, its animation at the clip's frame rate.

What the file holds (docs/formats.md has the full layout):

* one mesh, ``head``: the built-in head with the identity ``shape`` baked into its positions
  (shape is constant over a clip), smooth vertex normals, the head's per-vertex colours as
  ``COLOR_0`` (the linear albedo the built-in renderer shades, stored unchanged) and one material
  (rough, not metallic);
* 100 morph targets, the expression blendshapes in order (``extras.targetNames``: the named
  components by name, ``expr_011`` ... ``expr_099`` for the rest). Per unit coefficient, a target's
  offsets under ``MIN_OFFSET`` (1 micrometre) are left out and the rest stored as a sparse accessor:
  0.74 MB instead of 6.9 MB dense, at most 1 um per unit coefficient away from the head's own basis;
* a skeleton ``neck`` (the head's rotation pivot; its rotation is the motion's head rotation, its
  translation the pivot plus the motion's translation) with children ``head`` (the rigid skull,
  never rotated), ``jaw`` (the jaw hinge), ``eye_left`` and ``eye_right`` (the eyeball centres); the
  skin's weights are the built-in head's own linear-blend-skinning weights;
* with a motion: one animation ``motion`` whose keyframes are the clip's frames at ``fps`` (times
  t / fps), LINEAR interpolation: the 100 morph weights, the neck's rotation and translation, the
  jaw's and the eyes' rotations (quaternions from the axis-angle triplets).

Axes and units are FLAME's, which are glTF's: metres, +y up, the face looking toward +z.

One deviation from the head itself: its joint centres are vertex means of the shaped mesh *with*
the expression applied (like FLAME's J_regressor), while glTF joints stay where the bind pose put
them; the expression moves the jaw hinge by 27 um and the neck pivot by 58 um per unit coefficient,
so a vertex lands within about 0.1 mm of ``BuiltinHead``'s own (the round-trip test measures it).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ehead_cli import __version__
from ehead_cli.face.builtin import (
    EXPR_BLINK,
    EXPR_BROW_FROWN,
    EXPR_BROW_RAISE,
    EXPR_CHEEK_PUFF,
    EXPR_LIP_ROUND,
    EXPR_LIP_STRETCH,
    EXPR_LIPS_PART,
    EXPR_MOUTH_SIDEWAYS,
    EXPR_NOSE_WRINKLE,
    EXPR_SMILE,
    EXPR_SQUINT,
    EYE_LEFT_JOINT,
    EYE_RIGHT_JOINT,
    HEAD_JOINT,
    JAW_JOINT,
    NECK_PIVOT,
    BuiltinHead,
)
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.motionfile import Motion
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, MOTION_FPS, N_EXPR, ROT, TRANS
from ehead_cli.render.shading import vertex_normals

MIN_OFFSET = 1e-6  # metres per unit coefficient: smaller morph-target offsets are left out
NAMED_EXPRESSIONS = {EXPR_SMILE: "smile", EXPR_LIP_ROUND: "lip_round", EXPR_LIP_STRETCH: "lip_stretch",
                     EXPR_LIPS_PART: "lips_part", EXPR_BROW_RAISE: "brow_raise", EXPR_BROW_FROWN: "brow_frown",
                     EXPR_BLINK: "blink", EXPR_SQUINT: "squint", EXPR_CHEEK_PUFF: "cheek_puff",
                     EXPR_NOSE_WRINKLE: "nose_wrinkle", EXPR_MOUTH_SIDEWAYS: "mouth_sideways"}
TARGET_NAMES = tuple(NAMED_EXPRESSIONS.get(i, f"expr_{i:03d}") for i in range(N_EXPR))
# node order in the file; the skin's joint k is node JOINT_NODES[k] (skin-weight columns first)
NODE_ROOT, NODE_MESH, NODE_NECK = 0, 1, 2
JOINT_NAMES = {HEAD_JOINT: "head", JAW_JOINT: "jaw", EYE_LEFT_JOINT: "eye_left", EYE_RIGHT_JOINT: "eye_right"}

# glTF constants
_FLOAT, _USHORT, _UINT, _UBYTE = 5126, 5123, 5125, 5121
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942


@dataclass(frozen=True)
class GltfInfo:
    """What a written file holds: sizes for the report line."""

    n_bytes: int
    n_vertices: int
    n_targets: int
    n_frames: int


def axis_angle_to_quaternion(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle (radians) -> (..., 4) unit quaternions in glTF's order (x, y, z, w)."""
    aa = np.asarray(aa, np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    # sin(a/2)/a -> 1/2 as a -> 0 (the series keeps small rotations exact)
    s = np.where(angle > 1e-8, np.sin(angle / 2) / np.maximum(angle, 1e-12), 0.5 - angle**2 / 48)
    return np.concatenate([aa * s, np.cos(angle / 2)], -1).astype(np.float32)


class _Bin:
    """The binary chunk under construction: buffer views and accessors appended in order."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, array: np.ndarray, target: int | None = None) -> int:
        self.data.extend(b"\0" * (-len(self.data) % 4))  # every view starts 4-byte aligned
        blob = np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(blob)}
        if target is not None:
            view["target"] = target
        self.data.extend(blob)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, component: int, target: int | None = None, bounds: bool = False,
                 normalized: bool = False) -> int:
        """A dense accessor over ``array`` ((n,) or (n, k)); ``bounds`` adds min/max."""
        n, k = array.shape[0], (array.shape[1] if array.ndim == 2 else 1)
        acc = {"bufferView": self.view(array, target), "componentType": component, "count": int(n),
               "type": _TYPES[k]}
        if normalized:
            acc["normalized"] = True
        if bounds:
            flat = array.reshape(n, k)
            acc["min"], acc["max"] = flat.min(0).tolist(), flat.max(0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def sparse_vec3(self, dense: np.ndarray, keep: np.ndarray) -> int:
        """A float VEC3 accessor of len(dense) elements, zero except the rows ``keep`` (sparse storage)."""
        rows = np.flatnonzero(keep)
        index_type, index_dtype = (_USHORT, "<u2") if len(dense) < 65536 else (_UINT, "<u4")
        acc = {"componentType": _FLOAT, "count": int(len(dense)), "type": "VEC3",
               "min": dense.min(0).tolist(), "max": dense.max(0).tolist()}
        if len(rows):
            acc["sparse"] = {"count": int(len(rows)),
                             "indices": {"bufferView": self.view(rows.astype(index_dtype)),
                                         "componentType": index_type},
                             "values": {"bufferView": self.view(dense[rows].astype("<f4"))}}
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _translation(t: np.ndarray) -> np.ndarray:
    """(3,) -> the (4, 4) translation matrix (row-major; glTF stores its transpose)."""
    M = np.eye(4, dtype=np.float32)
    M[:3, 3] = t
    return M


def build_gltf(face: BuiltinHead, shape: np.ndarray, motion: np.ndarray | None = None, fps: float = MOTION_FPS,
               min_offset: float = MIN_OFFSET) -> tuple[dict, bytes]:
    """The glTF JSON document and its binary chunk for the built-in head with identity ``shape``
    (300,), animated by ``motion`` (T, 115) at ``fps`` when given."""
    with torch.no_grad():
        shape_t = torch.as_tensor(np.asarray(shape, np.float32)).to(face.v_template)[None]
        zeros = torch.zeros(1, N_EXPR).to(face.v_template)
        base = face._shaped(shape_t, zeros)[0]  # (V, 3) identity applied, neutral expression
        joints = face.joints(shape_t, zeros)[0].cpu().numpy()  # (4, 3): jaw, left eye, right eye, neck pivot
        normals = vertex_normals(base.T[:, None], face.faces).reshape(3, -1).T  # (V, 3) unit
    positions = base.cpu().numpy().astype("<f4")
    V = len(positions)
    exprdirs = face.exprdirs.cpu().numpy().reshape(N_EXPR, V, 3)  # metres per unit coefficient
    pivot = joints[NECK_PIVOT]
    centre = {JAW_JOINT: joints[0], EYE_LEFT_JOINT: joints[1], EYE_RIGHT_JOINT: joints[2], HEAD_JOINT: pivot}
    weights = face.skin_weights.cpu().numpy()  # (V, 4) columns in HEAD/JAW/EYE_LEFT/EYE_RIGHT order
    # per vertex: its joints by decreasing weight; unused slots are joint 0 with weight 0 (glTF's rule)
    order = np.argsort(-weights, axis=1, kind="stable")
    joint_weights = np.take_along_axis(weights, order, 1).astype("<f4")
    joint_ids = np.where(joint_weights > 0, order, 0).astype(np.uint8)

    b = _Bin()
    attributes = {
        "POSITION": b.accessor(positions, _FLOAT, _ARRAY_BUFFER, bounds=True),
        "NORMAL": b.accessor(normals.cpu().numpy().astype("<f4"), _FLOAT, _ARRAY_BUFFER),
        "COLOR_0": b.accessor(face.vertex_colors.cpu().numpy().astype("<f4"), _FLOAT, _ARRAY_BUFFER),
        "JOINTS_0": b.accessor(joint_ids, _UBYTE, _ARRAY_BUFFER),
        "WEIGHTS_0": b.accessor(joint_weights, _FLOAT, _ARRAY_BUFFER),
    }
    faces = face.faces.cpu().numpy()
    index_type, index_dtype = (_USHORT, "<u2") if V < 65536 else (_UINT, "<u4")
    indices = b.accessor(faces.reshape(-1).astype(index_dtype), index_type, _ELEMENT_ARRAY_BUFFER)
    targets = []
    for d in exprdirs:
        keep = np.linalg.norm(d, axis=1) >= min_offset
        targets.append({"POSITION": b.sparse_vec3(np.where(keep[:, None], d, 0.0).astype("<f4"), keep)})

    # nodes: root, the skinned mesh, the neck, then the skin's joints in skin-weight column order
    joint_nodes = [3 + k for k in range(4)]
    nodes = [
        {"name": "ehead", "children": [NODE_MESH, NODE_NECK]},
        {"name": "head_mesh", "mesh": 0, "skin": 0},
        {"name": "neck", "translation": pivot.tolist(), "children": joint_nodes},
    ]
    for k in range(4):
        nodes.append({"name": JOINT_NAMES[k], "translation": (centre[k] - pivot).tolist()})
    # inverse bind matrices: joint k's bind-pose world transform is a translation to its centre
    ibm = np.stack([_translation(-centre[k]) for k in range(4)] + [_translation(-pivot)])
    ibm_acc = b.accessor(ibm.transpose(0, 2, 1).reshape(5, 16).astype("<f4"), _FLOAT)  # column-major
    skin = {"name": "ehead_skin", "joints": [*joint_nodes, NODE_NECK], "skeleton": NODE_NECK,
            "inverseBindMatrices": ibm_acc}
    mesh = {"name": "head", "primitives": [{"attributes": attributes, "indices": indices, "material": 0,
                                           "mode": 4, "targets": targets}],
            "weights": [0.0] * N_EXPR, "extras": {"targetNames": list(TARGET_NAMES)}}
    doc = {
        "asset": {"version": "2.0", "generator": f"ehead {__version__} (built-in head)"},
        "scene": 0,
        "scenes": [{"name": "ehead", "nodes": [NODE_ROOT]}],
        "nodes": nodes,
        "meshes": [mesh],
        "skins": [skin],
        "materials": [{"name": "skin", "pbrMetallicRoughness": {
            "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.9}}],
    }
    if motion is not None and len(motion):
        doc["animations"] = [_animation(b, np.asarray(motion, np.float32), fps, pivot, nodes)]
    doc["buffers"] = [{"byteLength": len(b.data) + (-len(b.data) % 4)}]
    doc["bufferViews"], doc["accessors"] = b.views, b.accessors
    return doc, bytes(b.data)


def _animation(b: _Bin, motion: np.ndarray, fps: float, pivot: np.ndarray, nodes: list[dict]) -> dict:
    """The clip's keyframes: morph weights, neck rotation and translation, jaw and eye rotations."""
    T = len(motion)
    times = b.accessor((np.arange(T) / fps).astype("<f4"), _FLOAT, bounds=True)
    node = {n["name"]: i for i, n in enumerate(nodes)}
    tracks = [
        (NODE_MESH, "weights", motion[:, EXPR].reshape(-1, 1)),  # T * 100 scalars, frame-major
        (node["neck"], "rotation", axis_angle_to_quaternion(motion[:, ROT])),
        (node["neck"], "translation", pivot[None] + motion[:, TRANS]),
        (node["jaw"], "rotation", axis_angle_to_quaternion(motion[:, JAW])),
        (node["eye_left"], "rotation", axis_angle_to_quaternion(motion[:, EYE_LEFT])),
        (node["eye_right"], "rotation", axis_angle_to_quaternion(motion[:, EYE_RIGHT])),
    ]
    samplers, channels = [], []
    for target, path, values in tracks:
        out = b.accessor(np.ascontiguousarray(values, "<f4"), _FLOAT)
        samplers.append({"input": times, "output": out, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": target, "path": path}})
    return {"name": "motion", "samplers": samplers, "channels": channels}


def glb_bytes(doc: dict, binary: bytes) -> bytes:
    """A GLB container: the 12-byte header, the JSON chunk (space padded), the BIN chunk (zero padded)."""
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return (struct.pack("<III", _GLB_MAGIC, 2, total) + struct.pack("<II", len(text), _JSON_CHUNK) + text
            + struct.pack("<II", len(binary), _BIN_CHUNK) + binary)


def head_glb(shape: np.ndarray | None = None, face: BuiltinHead | None = None) -> bytes:
    """The built-in head with ``shape`` (default: the mean identity), no animation: the model the
    ``ehead serve`` page drives with streamed coefficients."""
    face = face or BuiltinHead()
    return glb_bytes(*build_gltf(face, np.zeros(300, np.float32) if shape is None else shape))


def write_gltf(path: str | Path, m: Motion, face: BuiltinHead | None = None) -> GltfInfo:
    """The built-in head animated by motion clip ``m``, as a ``.glb`` file at ``path`` (atomically)."""
    face = face or BuiltinHead()
    data = glb_bytes(*build_gltf(face, m.shape, m.motion, m.fps))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return GltfInfo(len(data), face.n_vertices, N_EXPR, m.n_frames)
