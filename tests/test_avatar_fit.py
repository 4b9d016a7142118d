"""``ehead avatar fit``: a few-step fit beats its first step on held-out frames, --resume continues
exactly, the avatar renders through ``ehead generate`` / ``ehead render`` / the jobs CSV, and bad
input (short, variable frame rate, no face, two faces, another face model) is one line with
nothing written."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from avatar_fixtures import TINY, rendered_video, tiny_capture, tiny_fit
from cli_runner import run_cli
from test_generate import write_clip
from test_prepare_ingest import write_test_video

from ehead_cli.avatar.fit import fit_avatar, load_saved_capture, state_dir
from ehead_cli.avatar.folder import load_avatar, verify_folder
from ehead_cli.face import BuiltinHead
from ehead_cli.io.motionfile import load_motion
from ehead_cli.io.video import probe_mp4, read_frames

REPO_SAMPLE = "sample_data/clips/conv009_fr"


@pytest.fixture
def fitted(tiny_avatar):
    return tiny_avatar


def test_fit_beats_its_first_step_on_held_out_frames(fitted):
    out, result = fitted
    assert result.steps == 30 and result.metrics["frames"] == 3  # the last 10 % of 30 frames
    assert result.metrics["psnr"] > result.first_step["psnr"] + 3.0
    assert result.metrics["ssim"] > result.first_step["ssim"]
    verify_folder(out)
    assert not state_dir(out).exists()  # the resume state goes once the folder is written
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"]["first_step"]["psnr"] == pytest.approx(result.first_step["psnr"])
    assert 0 <= config["reference_frame"] < 27  # a training frame, never a held-out one


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    cap = tiny_capture()
    cfg = tiny_fit(steps=12, ckpt_every=6)
    whole = fit_avatar(cap, BuiltinHead(), tmp_path / "whole", TINY, cfg, progress=False)

    def stop(step, _loss):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_avatar(cap, BuiltinHead(), tmp_path / "cut", TINY, cfg, progress=False, on_log=stop)
    assert not (tmp_path / "cut").exists() and state_dir(tmp_path / "cut").is_dir()
    saved = load_saved_capture(tmp_path / "cut")
    assert torch.equal(saved.frames, cap.frames)
    resumed = fit_avatar(saved, BuiltinHead(), tmp_path / "cut", TINY, cfg, resume=True, progress=False)
    assert resumed.steps == 12 and resumed.metrics["psnr"] == pytest.approx(whole.metrics["psnr"], abs=1e-6)
    a = load_avatar(tmp_path / "whole").renderer.trainable_state_dict()
    b = load_avatar(tmp_path / "cut").renderer.trainable_state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_generate_render_and_jobs_csv_with_the_avatar(fitted, tiny_checkpoint, tmp_path):
    out, _ = fitted
    audio, states = write_clip(tmp_path, "talk", 2.0)
    code, _, err = run_cli("generate", "--audio", str(audio), "--states", str(states),
                           "--checkpoint", str(tiny_checkpoint), "--avatar", str(out), "--out", str(tmp_path / "o"),
                           "--steps", "1")
    assert code == 0, err
    m = load_motion(tmp_path / "o" / "talk.npz")
    identity = load_avatar(out)
    np.testing.assert_array_equal(m.shape, identity.shape)  # the avatar's identity is the generation's
    assert m.camera is not None and m.camera.height == TINY.size
    info = probe_mp4(tmp_path / "o" / "talk.mp4")
    assert (info.width, info.height, info.n_frames) == (TINY.size, TINY.size, 50) and info.audio_codec == "aac"
    video = read_frames(tmp_path / "o" / "talk.mp4")
    direct = identity.renderer.render(identity.shape, m.motion).numpy()
    assert np.abs(video.astype(float) - direct.astype(float)).mean() < 6  # H.264 at a 32 px frame

    code, _, err = run_cli("render", str(tmp_path / "o" / "talk.npz"), "--avatar", str(out),
                           "--out", str(tmp_path / "again.mp4"))
    assert code == 0, err and probe_mp4(tmp_path / "again.mp4").n_frames == 50

    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"audio,states,out,avatar\ntalk.wav,talk.csv,j/with,{out}\ntalk.wav,talk.csv,j/without,\n")
    code, _, err = run_cli("generate", "--jobs", str(jobs), "--checkpoint", str(tiny_checkpoint),
                           "--size", "48", "--steps", "1")
    assert code == 0, err
    assert probe_mp4(tmp_path / "j" / "with.mp4").width == TINY.size
    assert probe_mp4(tmp_path / "j" / "without.mp4").width == 48  # the mesh renderer at --size


def test_avatar_for_another_face_model_than_the_checkpoint_is_one_line(fitted, tiny_checkpoint, tmp_path,
                                                                        monkeypatch):
    out, _ = fitted
    ckpt = tmp_path / "flame-ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["meta"]["face_model"] = "flame"
    (ckpt / "config.json").write_text(json.dumps(config))
    audio, states = write_clip(tmp_path, "talk", 1.0)
    code, _, err = run_cli("generate", "--audio", str(audio), "--states", str(states),
                           "--checkpoint", str(ckpt), "--avatar", str(out), "--out", str(tmp_path / "o"))
    assert code == 1 and "fitted on the builtin face model but the checkpoint generates motion for the flame" in err
    assert "Traceback" not in err and not (tmp_path / "o" / "talk.mp4").exists()


def write_vfr_video(path, n_frames: int = 50):
    """H.264 in Matroska with frame intervals alternating 20 and 60 ms."""
    with av.open(str(path), mode="w") as out:
        v = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.height, v.width, v.pix_fmt = 64, 64, "yuv420p"
        v.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 4 * i % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            out.mux(v.encode(frame))
            t += 20 if i % 2 else 60
        out.mux(v.encode(None))


@pytest.mark.parametrize("case", ["short", "vfr", "missing", "no_face", "two_faces"])
def test_bad_video_is_one_line_and_nothing_is_written(case, tmp_path, request):
    video = tmp_path / "in.mkv"
    needle = {"short": "lasts 0.60 s; an avatar needs at least 1 s", "vfr": "variable frame rate",
              "missing": "video not found", "no_face": "no face found", "two_faces": "2 faces in the video"}[case]
    if case == "short":
        write_test_video(video, n_frames=15, fps=25)
    elif case == "vfr":
        write_vfr_video(video)
    elif case == "no_face":
        import mediapipe  # noqa: F401 (the landmarks extra, installed by `make install`: fail, not skip)
        write_test_video(video, n_frames=40, fps=25)
    elif case == "two_faces":
        import mediapipe  # noqa: F401 (the landmarks extra, installed by `make install`: fail, not skip)
        grid = request.getfixturevalue("shared_data") / "grid" / "bbaf2n.mpg"
        from ehead_cli.prepare.ingest import read_video_frames

        one = read_video_frames(grid, 40)
        write_test_video(video, n_frames=40, fps=25, images=np.concatenate([one, one[:, :, ::-1]], axis=2))
    out = tmp_path / "avatar"
    code, _, err = run_cli("avatar", "fit", str(video), "--out", str(out), "--steps", "2")
    assert code == 2 and needle in err, err
    lines = err.strip().splitlines()  # stage notes ("reading in.mkv") may come first
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.mkv"] if case != "missing" else [])


def test_rendered_video_is_the_person_the_tests_fit():
    frames, motion, shape, camera = rendered_video(T=4)
    assert frames.shape == (4, camera.height, camera.width, 3) and frames.std() > 20


@pytest.mark.slow
def test_vgg_perceptual_loss_and_lpips_from_local_weight_files(tmp_path):
    """--vgg / --lpips files in the torchvision and lpips layouts, loaded through the real code: the
    perceptual term changes the fit and the held-out LPIPS is reported."""
    from safetensors.torch import save_file

    from ehead_cli.metrics.image import LPIPSVGG, vgg16_features

    torch.manual_seed(0)
    vgg = {f"features.{k}": v.contiguous() for k, v in vgg16_features().state_dict().items()}
    save_file(vgg, str(tmp_path / "vgg16.safetensors"))
    lins = {f"lin{k}.model.1.weight": lin.weight.detach().abs() for k, lin in enumerate(LPIPSVGG().lins)}
    torch.save(lins, tmp_path / "vgg.pth")
    cap, cfg = tiny_capture(), tiny_fit(steps=3, log_every=1)
    losses = {}
    for name, weights in (("plain", None), ("vgg", str(tmp_path / "vgg16.safetensors"))):
        logged = []
        result = fit_avatar(cap, BuiltinHead(), tmp_path / name, TINY, cfg, vgg=weights,
                            lpips=str(tmp_path / "vgg.pth") if weights else None, progress=False,
                            on_log=lambda s, v, logged=logged: logged.append(v))
        losses[name] = logged
    assert losses["vgg"][0] > losses["plain"][0]  # the same first step plus a perceptual term
    assert isinstance(result.metrics["lpips"], float) and result.metrics["lpips"] > 0
    assert "VGG perceptual" in (tmp_path / "vgg" / "AVATAR_CARD.md").read_text()
