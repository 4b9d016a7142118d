"""The glTF export: read the .glb back with a reader written here (the GLB container, dense and sparse
accessors, node transforms, morph targets and linear-blend skinning, as glTF defines them), count its
targets and keyframes, and compare posed frames with ``BuiltinHead``'s own vertices."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from ehead_cli.export.gltf import MIN_OFFSET, TARGET_NAMES, axis_angle_to_quaternion, build_gltf, glb_bytes
from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, ROT, TRANS

COMPONENTS = {5126: "<f4", 5123: "<u2", 5125: "<u4", 5121: "u1"}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    """A minimal glTF 2.0 binary reader (only what the test needs, straight from the specification)."""

    def __init__(self, data: bytes):
        magic, version, length = struct.unpack_from("<III", data, 0)
        assert magic == 0x46546C67 and version == 2 and length == len(data)
        n_json, kind = struct.unpack_from("<II", data, 12)
        assert kind == 0x4E4F534A and n_json % 4 == 0
        self.doc = json.loads(data[20:20 + n_json])
        n_bin, kind = struct.unpack_from("<II", data, 20 + n_json)
        assert kind == 0x004E4942
        self.bin = data[28 + n_json:28 + n_json + n_bin]
        assert self.doc["buffers"][0]["byteLength"] <= n_bin

    def _view(self, index: int, dtype: str, count: int, width: int) -> np.ndarray:
        view = self.doc["bufferViews"][index]
        assert view["byteOffset"] % 4 == 0
        return np.frombuffer(self.bin, dtype, count * width, view["byteOffset"]).reshape(count, width)

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc["accessors"][index]
        dtype, width, count = COMPONENTS[acc["componentType"]], WIDTH[acc["type"]], acc["count"]
        out = (self._view(acc["bufferView"], dtype, count, width).copy() if "bufferView" in acc
               else np.zeros((count, width), dtype))
        if "sparse" in acc:
            sp = acc["sparse"]
            ids = self._view(sp["indices"]["bufferView"], COMPONENTS[sp["indices"]["componentType"]], sp["count"], 1)
            out[ids[:, 0]] = self._view(sp["values"]["bufferView"], dtype, sp["count"], width)
        return out

    def local_matrix(self, node: int, pose: dict[tuple[int, str], np.ndarray]) -> np.ndarray:
        n = self.doc["nodes"][node]
        t = pose.get((node, "translation"), np.array(n.get("translation", [0, 0, 0]), np.float64))
        x, y, z, w = pose.get((node, "rotation"), np.array(n.get("rotation", [0, 0, 0, 1]), np.float64))
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = R, t
        return M

    def world_matrices(self, pose) -> dict[int, np.ndarray]:
        out = {}

        def walk(node: int, parent: np.ndarray) -> None:
            out[node] = parent @ self.local_matrix(node, pose)
            for c in self.doc["nodes"][node].get("children", []):
                walk(c, out[node])

        for root in self.doc["scenes"][self.doc["scene"]]["nodes"]:
            walk(root, np.eye(4))
        return out

    def pose_at_keyframe(self, frame: int) -> tuple[dict, np.ndarray]:
        """The animated node properties and the morph weights at keyframe ``frame``."""
        anim = self.doc["animations"][0]
        pose, weights = {}, None
        for ch in anim["channels"]:
            values = self.accessor(anim["samplers"][ch["sampler"]]["output"])
            target = (ch["target"]["node"], ch["target"]["path"])
            if target[1] == "weights":
                n = len(self.doc["meshes"][0]["weights"])
                weights = values.reshape(-1, n)[frame]
            else:
                pose[target] = values[frame].astype(np.float64)
        return pose, weights

    def skinned_vertices(self, frame: int) -> np.ndarray:
        """Morph targets then skinning, at one keyframe: (V, 3)."""
        prim = self.doc["meshes"][0]["primitives"][0]
        pose, weights = self.pose_at_keyframe(frame)
        v = self.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        for w, target in zip(weights, prim["targets"], strict=True):
            v = v + w * self.accessor(target["POSITION"])
        skin = self.doc["skins"][0]
        world = self.world_matrices(pose)
        ibm = self.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
        joint_m = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin["joints"])])  # (J, 4, 4)
        ids = self.accessor(prim["attributes"]["JOINTS_0"]).astype(np.int64)
        wts = self.accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
        M = np.einsum("vk,vkab->vab", wts, joint_m[ids])
        return np.einsum("vab,vb->va", M[:, :3, :3], v) + M[:, :3, 3]


@pytest.fixture(scope="module")
def face() -> BuiltinHead:
    return BuiltinHead()


def random_motion(T: int, seed: int = 0) -> Motion:
    rng = np.random.default_rng(seed)
    m = np.zeros((T, 115), np.float32)
    m[:, EXPR] = rng.normal(size=(T, 100)) * np.linspace(1.5, 0.3, 100)
    m[:, JAW] = rng.normal(size=(T, 3)) * [0.15, 0.03, 0.03] + [0.15, 0, 0]
    m[:, EYE_LEFT] = rng.normal(size=(T, 3)) * 0.1
    m[:, EYE_RIGHT] = rng.normal(size=(T, 3)) * 0.1
    m[:, ROT] = rng.normal(size=(T, 3)) * 0.2
    m[:, TRANS] = rng.normal(size=(T, 3)) * 0.01
    return Motion(m, rng.normal(size=300).astype(np.float32), np.where(np.arange(T) < T // 2, 1, -1), 25)


def test_glb_round_trip_matches_the_builtin_head(face):
    m = random_motion(12)
    glb = Glb(glb_bytes(*build_gltf(face, m.shape, m.motion, m.fps)))
    doc = glb.doc
    prim = doc["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 100 and doc["meshes"][0]["extras"]["targetNames"] == list(TARGET_NAMES)
    assert TARGET_NAMES[0] == "smile" and TARGET_NAMES[6] == "blink" and TARGET_NAMES[99] == "expr_099"
    anim = doc["animations"][0]
    assert len(anim["channels"]) == 6
    for s in anim["samplers"]:  # every track has one keyframe per frame at t / 25
        np.testing.assert_allclose(glb.accessor(s["input"])[:, 0], np.arange(12) / 25, atol=1e-7)
        assert glb.doc["accessors"][s["output"]]["count"] in (12, 12 * 100)
    wts = glb.accessor(prim["attributes"]["WEIGHTS_0"])
    np.testing.assert_allclose(wts.sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(glb.accessor(prim["indices"]).reshape(-1, 3), face.faces.numpy())

    with torch.no_grad():
        ref = face(torch.from_numpy(m.shape)[None], torch.from_numpy(m.motion)).numpy()  # (T, V, 3)
    errors = [np.abs(glb.skinned_vertices(t) - ref[t]).max() for t in (0, 5, 11)]
    assert max(errors) < 1e-4, errors  # metres: joint centres fixed at the bind pose, offsets < 1 um left out
    # without the dropped offsets and at neutral expression the skinning itself is exact
    still = m.motion.copy()
    still[:, EXPR] = 0
    exact = Glb(glb_bytes(*build_gltf(face, m.shape, still, 25, min_offset=0.0)))
    with torch.no_grad():
        ref = face(torch.from_numpy(m.shape)[None], torch.from_numpy(still)).numpy()
    assert np.abs(exact.skinned_vertices(3) - ref[3]).max() < 2e-6


def test_sparse_targets_leave_out_only_tiny_offsets(face):
    glb = Glb(glb_bytes(*build_gltf(face, np.zeros(300, np.float32))))
    dirs = face.exprdirs.numpy().reshape(100, -1, 3)
    for i in (0, 6, 57):
        target = glb.accessor(glb.doc["meshes"][0]["primitives"][0]["targets"][i]["POSITION"])
        assert np.abs(target - dirs[i]).max() <= MIN_OFFSET
        assert (np.linalg.norm(target, axis=1) > 0).sum() < len(target)  # sparse: some rows are absent
    assert "animations" not in glb.doc


def test_quaternions_match_axis_angle():
    aa = np.array([[0, 0, 0], [0.3, -0.2, 0.1], [1e-9, 0, 0], [0, 3.0, 0]], np.float32)
    q = axis_angle_to_quaternion(aa).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-6)
    R = axis_angle_to_matrix(torch.from_numpy(aa)).double().numpy()
    for qi, Ri in zip(q, R, strict=True):
        x, y, z, w = qi
        Rq = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                       [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                       [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        np.testing.assert_allclose(Rq, Ri, atol=1e-6)


def test_cli_export_gltf_with_audio(tmp_path):
    from cli_runner import run_cli

    m = random_motion(30)
    save_motion(tmp_path / "clip.npz", m)
    sf.write(tmp_path / "voice.wav", np.zeros(int(1.2 * 16000), np.float32), 16000)

    def run(*args):
        return run_cli("export", str(tmp_path / "clip.npz"), *args)

    code, out, _ = run("--format", "gltf", "--audio", str(tmp_path / "voice.wav"))
    assert code == 0
    glb = Glb((tmp_path / "clip.glb").read_bytes())
    assert glb.doc["accessors"][glb.doc["animations"][0]["samplers"][0]["input"]]["count"] == 30
    assert sf.info(str(tmp_path / "clip.wav")).frames == 30 * 640
    assert "wrote" in out
    code, _, err = run("--format", "gltf", "--out", str(tmp_path / "x.gltf"))
    assert code == 2
    assert "writes a .glb file" in err
    code, _, err = run("--format", "flame-npz", "--audio", str(tmp_path / "voice.wav"))
    assert code == 2
    assert "--audio is used only by --format gltf" in err
