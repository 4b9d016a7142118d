"""Where a neural-avatar frame's time goes on the CPU: each stage of ``NeuralAvatar.images`` timed on
its own (the same operations, in order), then JPEG encoding and the motion model's share per frame.

Stages: the face model (vertices), projection, rasterisation, barycentrics and vertex normals, the
feature and normal gathers (embedding bags), scattering them into the U-Net's input image, the U-Net
(stem, down levels, FiLM, up levels, head), compositing over the background; then PIL JPEG at quality
85; and the motion model's time per frame (a 100-frame window of the shipped demo model at 4 steps,
batch 1, divided by 100).

Run from a checkout: python benchmarks/avatar_profile.py [--avatar models/avatar-grid-bbaf2n]
[--threads 1] [--batch 1]; writes benchmarks/avatar-profile-<device>-<threads>threads.json and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ehead_cli.avatar.identity import Avatar  # noqa: E402
from ehead_cli.layout import ROT, TRANS  # noqa: E402


def timed(fn, repeats: int):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return out, 1000 * float(np.median(ts))


@torch.inference_mode()
def profile(avatar_dir: Path, batch: int, repeats: int) -> dict:
    from ehead_cli.avatar.neural import ROT_SCALE, TRANS_SCALE
    from ehead_cli.render.rasterizer import barycentrics, rasterize
    from ehead_cli.render.shading import vertex_normals

    avatar = Avatar.load(avatar_dir)
    nav = avatar.renderer
    nav.eval()
    S = nav.cfg.size
    shape = torch.as_tensor(avatar.shape, dtype=torch.float32)
    rng = np.random.default_rng(0)
    motion = torch.from_numpy((rng.normal(size=(batch, 115)) * 0.02).astype(np.float32))
    shape, motion = nav._frames(shape, motion)
    N, cam, face = motion.shape[0], nav.camera, nav.face
    t: dict[str, float] = {}
    vertices, t["face model (vertices)"] = timed(lambda: face(shape, motion), repeats)
    V = vertices.shape[1]
    world = vertices.reshape(N * V, 3).T
    points, t["projection"] = timed(lambda: cam.project_channels(world, S, S).view(3, N, V), repeats)
    frags, t["rasterisation"] = timed(lambda: rasterize(points, face.faces, S, S, cam.near, cam.far,
                                                          nav.cull_backfaces), repeats)

    def bary_normals():
        weights, vid = barycentrics(frags, points, face.faces)
        R = torch.tensor(cam.pose, dtype=world.dtype)[:3, :3]
        normals = (R @ vertex_normals(world.view(3, N, V), face.faces).view(3, N * V)).T
        return weights, vid, normals
    (weights, vid, normals), t["barycentrics + normals"] = timed(bary_normals, repeats)
    w = weights.T.contiguous()

    def gathers():
        feats = F.embedding_bag((vid % V).T.contiguous(), nav.field(), per_sample_weights=w, mode="sum")
        nrm = F.embedding_bag(vid.T.contiguous(), normals.contiguous(), per_sample_weights=w, mode="sum")
        return feats, nrm
    (feats, nrm), t["feature + normal gathers"] = timed(gathers, repeats)
    pix = frags.pix

    def scatter():
        covered = torch.cat([feats, nrm, torch.ones_like(nrm[:, :1]), nav.coords.index_select(0, pix % (S * S))], 1)
        x = covered.new_zeros(N, S * S, covered.shape[1])
        x[:, :, -2:] = nav.coords
        x = x.view(N * S * S, -1)
        return x.index_copy(0, pix, covered).view(N, S, S, -1).permute(0, 3, 1, 2)
    x, t["U-Net input image"] = timed(scatter, repeats)
    pose = torch.cat([motion[:, ROT] * ROT_SCALE, motion[:, TRANS] * TRANS_SCALE], -1)
    unet = nav.unet
    dtype = nav._dtype()
    parts = {}

    def run_unet():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            s = time.perf_counter()
            h = unet.stem(x.contiguous(memory_format=torch.channels_last))
            parts["stem"] = time.perf_counter() - s
            skips = []
            for i, block in enumerate(unet.down):
                s = time.perf_counter()
                if i:
                    h = F.avg_pool2d(h, 2)
                h = block(h)
                skips.append(h)
                parts[f"down {i}"] = time.perf_counter() - s
            s = time.perf_counter()
            gamma, beta = unet.film(pose).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + gamma) + beta
            parts["FiLM"] = time.perf_counter() - s
            for j, (block, skip) in enumerate(zip(unet.up, reversed(skips[:-1]), strict=True)):
                s = time.perf_counter()
                h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
                h = block(torch.cat([h, skip], 1))
                parts[f"up {j}"] = time.perf_counter() - s
            s = time.perf_counter()
            out = unet.head(h)
            parts["head"] = time.perf_counter() - s
        return torch.sigmoid(out[:, :3]), out[:, 3:]
    (rgb, alpha_logit), t["U-Net"] = timed(run_unet, repeats)
    unet_parts = {k: 1000 * v for k, v in parts.items()}  # the last run's split

    def composite():
        a = torch.sigmoid(alpha_logit.float())
        return (a * rgb.float() + (1 - a) * nav.background.clamp(0, 1)).permute(0, 2, 3, 1)
    image, t["compositing"] = timed(composite, repeats)
    u8 = (image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def jpeg():
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, "JPEG", quality=85)
        return buf
    _, jpeg_ms = timed(jpeg, repeats)
    _, whole = timed(lambda: nav.images(shape, motion), repeats)
    return {"size": S, "batch": N, "dtype": str(dtype), "stages_ms": t, "unet_parts_ms": unet_parts,
            "jpeg_ms_per_frame": jpeg_ms, "images_ms": whole, "unet_channels": list(nav.cfg.channels),
            "unshuffle": nav.cfg.unshuffle}


def motion_ms_per_frame(repeats: int) -> float:
    from ehead_cli.generate.generator import Generator

    gen = Generator.from_checkpoint(device="cpu", steps=4)
    audio = (np.random.default_rng(0).normal(size=64000) * 0.05).astype(np.float32)
    states = np.full(100, -1, np.int8)
    _, ms = timed(lambda: gen.generate(audio, states), repeats)
    return ms / 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", type=Path, default=REPO / "models" / "avatar-grid-bbaf2n")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ehead_cli.bench.run import device_name, device_slug

    result = profile(args.avatar, args.batch, args.repeats)
    result["motion_ms_per_frame"] = motion_ms_per_frame(max(3, args.repeats // 4))
    env = {"device_name": device_name(torch.device("cpu")), "threads": args.threads, "torch": torch.__version__}
    result["environment"] = env
    per_frame = {k: v / result["batch"] for k, v in result["stages_ms"].items()}
    total = sum(per_frame.values()) + result["jpeg_ms_per_frame"] + result["motion_ms_per_frame"]
    print("| stage | ms per frame | share |\n|---|---|---|")
    for k, v in [*per_frame.items(), ("JPEG encoding", result["jpeg_ms_per_frame"]),
                 ("motion model (demo, 4 steps)", result["motion_ms_per_frame"])]:
        print(f"| {k} | {v:.2f} | {100 * v / total:.0f} % |")
    print(f"| total | {total:.2f} | ({1000 / total:.1f} frames/s) |")
    print("U-Net parts (ms, whole batch):", {k: round(v, 2) for k, v in result["unet_parts_ms"].items()})
    print(f"NeuralAvatar.images as a whole: {result['images_ms'] / result['batch']:.2f} ms per frame")
    target = args.json or REPO / "benchmarks" / (
        f"avatar-profile-{device_slug({'device_type': 'cpu', **env})}-batch{args.batch}.json")
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
