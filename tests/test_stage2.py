"""Stage II (``ehead train --stage 2``): the loss, its gradients, the run folder, resume, the checkpoint
round trip through ``ehead generate``, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from safetensors.torch import load_file
from stage2_fixtures import frames_dataset

from ehead_cli.avatar.folder import checkpoint_avatar, load_avatar
from ehead_cli.avatar.mesh import MeshAvatar
from ehead_cli.errors import InputError
from ehead_cli.face import BuiltinHead
from ehead_cli.io.dataset import load_index
from ehead_cli.io.frames import read_frames_info
from ehead_cli.model.checkpoint import load_checkpoint
from ehead_cli.train.config import TrainConfig
from ehead_cli.train.logging import read_metrics
from ehead_cli.train.stage2 import FrameBatch, RefineConfig, RendererSpec, Stage2Task, train

# a high learning rate without warm-up, so the albedo moves visibly in 4 steps
FAST = {"steps": 4, "val_every": 2, "ckpt_every": 2, "log_every": 1, "lr": 0.02, "warmup_steps": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return frames_dataset(tmp_path_factory.mktemp("stage2") / "data")


def _task(data: Path, checkpoint: Path, renderer: str = "mesh", k: int = 2) -> Stage2Task:
    index = load_index(data)
    clips = index.split("train")
    frames = {c.id: read_frames_info(data, c.id) for c in clips}
    head = load_checkpoint(checkpoint).train()
    camera = frames[clips[0].id].camera
    if renderer == "mesh":
        r = MeshAvatar(BuiltinHead(), camera)
    else:
        from avatar_fixtures import TINY

        from ehead_cli.avatar.neural import NeuralAvatar

        r = NeuralAvatar(BuiltinHead(), camera, TINY)
    spec = RendererSpec("r", r.train(), clips[0].shape, clips[0].motion[0], {}, "builtin", data / "unused")
    cfg = TrainConfig(steps=10, batch_size=4, workers=0, val_every=0)
    return Stage2Task(head, [spec], clips, [], {c.id: "r" for c in clips}, frames, cfg,
                      RefineConfig(frames_per_window=k), None, {})


@pytest.mark.parametrize("renderer", ["mesh", "neural"])
def test_the_loss_reaches_the_dit_and_the_renderer_and_each_can_lower_it(data, tiny_checkpoint, renderer):
    task = _task(data, tiny_checkpoint, renderer)
    task.model.eval()  # no dropout: the same batch gives the same loss until a weight moves
    batch = FrameBatch.collate([task.train_set[i] for i in (0, 3, 5, 8)])
    assert batch.frames.shape == (4, 2, 32, 32, 3) and batch.frames.dtype == torch.uint8
    groups = task.param_groups(0.0)
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, 0.5]  # the DiT's two groups, the renderer at half
    out = task.loss_module(batch)
    assert set(out) == {"loss", "coef", "l1", "perceptual", "jaw", "psnr"}
    out["loss"].backward()
    dit = [p for p in task.model.head.dit.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    rend = [p for p in task.model.renderers.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(dit) > 10 and rend, "the gradient must reach both the DiT and the renderer"

    def descend(params, lr: float, steps: int, key: str) -> list[float]:
        opt = torch.optim.AdamW([{**g, "lr": lr * g["lr_scale"]} for g in params])
        seen = []
        for _ in range(steps):
            out = task.loss_module(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            seen.append(float(out[key].detach()))
        return seen

    renderer_only = descend(groups[-1:], 5e-3, 6, "loss")  # the DiT fixed: the renderer lowers L_II
    assert all(b < a for a, b in zip(renderer_only, renderer_only[1:], strict=False)), renderer_only
    dit_only = descend(groups[:-1], 1e-3, 8, "loss")  # the renderer fixed: the DiT lowers L_II
    assert dit_only[-1] < 0.95 * dit_only[0], dit_only


def test_the_mesh_avatar_draws_what_the_builtin_renderer_draws():
    from ehead_cli.render import Renderer
    from ehead_cli.render.clip_camera import ClipCamera

    face = BuiltinHead().eval()
    renderer = Renderer(face, size=48)
    mesh = MeshAvatar(face, ClipCamera.from_camera(renderer.mesh.camera, 48, 48))
    motion = np.zeros((3, 115), np.float32)
    motion[:, 100] = (0.0, 0.1, 0.2)  # the jaw opening
    assert torch.equal(mesh.render(np.zeros(300), motion), renderer.render(np.zeros(300), motion))


def test_stage2_run_resume_and_generate_with_both_refined_parts(data, tiny_checkpoint, tmp_path, monkeypatch):
    full = train(data, tmp_path / "full", tiny_checkpoint, ["builtin"], overrides=FAST, progress=False)
    part = train(data, tmp_path / "part", tiny_checkpoint, ["builtin"], overrides=FAST, stop_after=2, progress=False)
    train(None, part, resume=True, progress=False)
    a, b = read_metrics(full), read_metrics(part)
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and [r["step"] for r in a] == [1, 2, 3, 4]
    assert "val_loss" in a[-1] and np.isfinite(a[-1]["psnr"])
    wa, wb = (load_file(str(r / "state" / "state.safetensors")) for r in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # the run folder records both stages; the checkpoint says which stage made it and with which renderer
    text = (full / "config.toml").read_text()
    assert "[stage1]" in text and "[stage2.refine]" in text and 'perceptual = "ms-ssim"' in text
    meta = json.loads((full / "checkpoint" / "config.json").read_text())["meta"]
    assert meta["stage"] == 2 and meta["stage1"]["init"] == str(Path(tiny_checkpoint).resolve())
    assert [(r["name"], r["kind"]) for r in meta["renderers"]] == [("builtin", "mesh")]
    assert (full / "renderers" / "builtin" / "MANIFEST.json").is_file()

    # the refined renderer in the checkpoint holds the EMA albedo, which Stage II moved
    avatar = checkpoint_avatar(full)
    assert avatar == full / "checkpoint" / "avatars" / "builtin"
    refined = load_avatar(avatar).renderer
    ema = load_file(str(full / "state" / "state.safetensors"))["ema.renderers.builtin.albedo"]
    assert torch.equal(refined.albedo.detach(), ema)
    assert not torch.equal(ema, BuiltinHead().vertex_colors)

    # ehead generate --checkpoint RUN2: the refined DiT's motion, drawn by the refined renderer
    clip = data / "clips" / "d.flac"
    states = tmp_path / "s.csv"
    states.write_text("start,end,state\n0,4.4,speak\n")
    import ehead_cli.io.video as video_io

    drawn = []
    real_write = video_io.write_mp4

    def capture(path, frames, *args, **kwargs):  # keep the frames the renderer drew, before H.264
        frames = list(frames)
        drawn.extend(frames)
        return real_write(path, iter(frames), *args, **kwargs)

    monkeypatch.setattr(video_io, "write_mp4", capture)
    code, _, err = run_cli("generate", "--audio", str(clip), "--states", str(states), "--checkpoint", str(full),
                           "--out", str(tmp_path / "out"), "--threads", "1")
    assert code == 0
    assert "Stage-II renderer" in err
    from ehead_cli.io.motionfile import load_motion
    from ehead_cli.io.video import read_frames
    from ehead_cli.render import Renderer

    motion = load_motion(tmp_path / "out" / "d.npz")
    assert read_frames(tmp_path / "out" / "d.mp4").shape == (len(motion.motion), 32, 32, 3)
    refined_frames = refined.render(motion.shape, motion.motion).numpy()
    plain_frames = Renderer(BuiltinHead().eval(), size=32).render(motion.shape, motion.motion).numpy()
    assert np.array_equal(np.stack(drawn), refined_frames)  # the refined renderer drew the video
    assert not np.array_equal(refined_frames, plain_frames)  # (which the unrefined one would not have)
    from ehead_cli.generate.generator import Generator

    gen = Generator.from_checkpoint(full, steps=4)
    ref = gen.model.dit.state_dict()
    state = load_file(str(full / "state" / "state.safetensors"))
    assert all(torch.equal(v, state[f"ema.head.dit.{k}"]) for k, v in ref.items())

    # a changed renderer folder is refused
    (avatar / "AVATAR_CARD.md").write_text("changed")
    (avatar / "MANIFEST.json").write_text((avatar / "MANIFEST.json").read_text() + " ")
    with pytest.raises(InputError, match="differs"):
        checkpoint_avatar(full)


def test_stage2_on_a_dataset_without_frames_is_one_line_naming_the_fix(toy_dataset, tiny_checkpoint, tmp_path):
    code, _, err = run_cli("train", "--stage", "2", "--init", str(tiny_checkpoint), "--avatar", "builtin", "--data",
                           str(toy_dataset), "--out", str(tmp_path / "run"))
    err = err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "frames" in err and "ehead prepare" in err and "--tracker-bias" in err
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli("train", "--stage", "2", "--data", str(toy_dataset), "--out", str(tmp_path / "run"))
    assert code == 2 and "--init" in err
    code, _, err = run_cli("train", "--data", str(toy_dataset), "--out", str(tmp_path / "run"), "--avatar", "builtin")
    assert code == 2 and "--avatar applies to --stage 2" in err


def test_stage2_through_the_command_line_with_a_neural_avatar(data, tiny_checkpoint, tiny_avatar, tmp_path):
    """ehead avatar fit --data on the frames, then Stage II with it: the checkpoint holds the refined
    neural avatar, which ehead generate uses."""
    avatar_dir, _ = tiny_avatar  # its camera is another view: fit one on the dataset's frames instead
    assert run_cli("avatar", "fit", "--data", str(data), "--out", str(tmp_path / "av"), "--steps", "2", "--size",
                   "32", "--threads", "1").code != 0  # 32 px is not an offered size: the message says so
    from avatar_fixtures import TINY, tiny_fit

    from ehead_cli.avatar.capture import dataset_capture
    from ehead_cli.avatar.fit import fit_avatar

    capture = dataset_capture(data, BuiltinHead(), 0.1)
    assert capture.crop == (0, 0, 32) and capture.camera == read_frames_info(data, "a").camera
    fit_avatar(capture, BuiltinHead(), tmp_path / "av", TINY, tiny_fit(steps=2), progress=False)
    cfg = tmp_path / "s2.toml"
    cfg.write_text("[stage2]\nsteps = 2\nval_every = 0\n")
    code, _, err = run_cli("train", "--stage", "2", "--init", str(tiny_checkpoint), "--avatar", str(tmp_path / "av"),
                           "--data", str(data), "--config", str(cfg), "--out", str(tmp_path / "run"), "--threads",
                           "1")
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())["meta"]
    assert meta["renderers"][0]["kind"] == "neural" and meta["renderers"][0]["name"] == "av"
    refined = load_avatar(checkpoint_avatar(tmp_path / "run"))
    assert refined.config["stage2"]["step"] == 2 and refined.config["sources"][0]["file"] == "a"


def test_label_drift_tells_the_init_models_data_from_other_labels():
    from types import SimpleNamespace

    from ehead_cli.model.stats import MotionStats
    from ehead_cli.train.stage2 import DRIFT_WARN, label_drift

    rng = np.random.default_rng(0)
    own = [SimpleNamespace(motion=rng.normal(0.0, 0.05, (200, 115)).astype(np.float32)) for _ in range(3)]
    stats = MotionStats.fit([c.motion for c in own], np.zeros((4, 2)))
    drift = label_drift(own, stats)
    assert set(drift) == {"expression", "jaw", "eye", "rotation", "translation"}
    assert all(0.6 < z < 1.0 for z in drift.values())  # E|z| = 0.8 for Gaussian labels
    other = [SimpleNamespace(motion=c.motion.copy()) for c in own]
    for c in other:
        c.motion[:, :100] += 2.0  # a tracker's expression far outside what the model saw (40 std)
    far = label_drift(other, stats)
    assert far["expression"] > DRIFT_WARN and far["jaw"] < 1.0
