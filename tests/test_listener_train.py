"""The listener's training stages for two steps on the committed dyadic sample data (trained through the
command line by the ``listener_runs`` fixture), exact resume, generation on a sample dyad (NPZ,
side-by-side MP4, seeds, batching), evaluation wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ehead_cli.errors import InputError
from ehead_cli.io.motionfile import load_motion, save_motion
from ehead_cli.io.video import probe_mp4
from ehead_cli.layout import LISTEN, MOTION_DIM
from ehead_cli.listener.checkpoint import load_listener
from ehead_cli.listener.generate import (
    ListenerGenerator,
    ListenerJob,
    dataset_jobs,
    evaluate_listener,
    run_listener_jobs,
    vq_metrics,
)
from ehead_cli.listener.train import train_lm, train_vq
from ehead_cli.train.logging import read_metrics
from tests.conftest import LISTENER_TEST_CLIP, REPO

SAMPLE = REPO / "sample_data" / "dyadic"
TEST_CLIP = LISTENER_TEST_CLIP
VAL_VQ = {"train_vq": {"val_every": 1}}  # = LISTENER_VAL_CONFIG, which the listener_runs fixture trained with
VAL_LM = {"train_lm": {"val_every": 1, "keep_best": True}}


@pytest.fixture
def data(dyadic_subset) -> Path:
    return dyadic_subset


@pytest.fixture
def runs(listener_runs) -> Path:
    return listener_runs


def test_both_stages_train_two_steps_and_write_their_runs(runs, data):
    vq_rows = read_metrics(runs / "vq")
    assert [r["step"] for r in vq_rows] == [1, 2] and all("val_loss" in r for r in vq_rows)
    assert all(np.isfinite(r["loss"]) and r["phase"] == 0 for r in vq_rows)
    for name in ("config.toml", "loss.png", "state/state.safetensors", "checkpoint/model.safetensors"):
        assert (runs / "vq" / name).is_file(), name
    assert not (runs / "vq" / "best").exists()  # keep_best is off for stage vq
    lm_rows = read_metrics(runs / "lm")
    assert [r["phase"] for r in lm_rows] == [0, 1]  # one step of L_pre, one of L
    assert [r["lr"] for r in lm_rows] == [5e-4, 1e-3]  # the warm-up over the phases' lr
    assert lm_rows[0]["loss"] != lm_rows[0]["ce_listener"]  # L_pre averages every modality
    assert lm_rows[1]["loss"] == pytest.approx(lm_rows[1]["ce_listener"])
    best_step = min(lm_rows, key=lambda r: r["val_ce_listener"])["step"]
    assert load_listener(runs / "lm" / "best").meta["step"] == best_step  # best/: lowest validation listener CE
    assert load_listener(runs / "lm").meta["step"] == best_step  # a run folder resolves to best/
    model = load_listener(runs / "lm" / "checkpoint")
    assert model.lm is not None and model.codebooks is not None and len(model.identities) == 6
    assert set(model.meta["identity_shapes"]) == set(model.identities)
    assert model.meta["stage"] == "lm" and model.meta["step"] == 2 and model.meta["weights"] == "last"
    with pytest.raises(InputError, match="already holds"):
        train_vq(data, runs / "vq", preset="tiny", progress=False)
    with pytest.raises(InputError, match="not a listener stage-lm run"):
        train_lm(None, runs / "vq", resume=True, progress=False)


def _assert_same_state(a: Path, b: Path) -> None:
    straight = load_file(str(a / "state" / "state.safetensors"))
    resumed = load_file(str(b / "state" / "state.safetensors"))
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k  # bit for bit


def test_resume_continues_exactly(tmp_path, runs, data):
    train_vq(data, tmp_path / "a", preset="tiny", progress=False, stop_after=1, overrides=VAL_VQ)
    train_vq(None, tmp_path / "a", resume=True, progress=False)
    _assert_same_state(runs / "vq", tmp_path / "a")
    # stage lm across its phase switch: pre-training step 1, then resume into the full objective
    train_lm(data, tmp_path / "b", vq=runs / "vq", preset="tiny", progress=False, stop_after=1, overrides=VAL_LM)
    train_lm(None, tmp_path / "b", resume=True, progress=False)
    _assert_same_state(runs / "lm", tmp_path / "b")
    assert [r["phase"] for r in read_metrics(tmp_path / "b")] == [0, 1]


@pytest.mark.slow  # renders video / synthesises and encodes a dyad: about 4 s
def test_generate_on_a_sample_dyad(tmp_path, runs, data):
    from ehead_cli.face.builtin import BuiltinHead
    from ehead_cli.render import Renderer

    gen = ListenerGenerator.from_checkpoint(runs / "lm" / "checkpoint")
    job = ListenerJob.from_files(data / "clips" / f"{TEST_CLIP}.ogg", data / "speaker" / f"{TEST_CLIP}.npz",
                                 "listener01", tmp_path)
    T = len(job.speaker)
    renderer = Renderer(BuiltinHead(), size=32, batch_size=64)
    clip = ListenerJob(job.name, job.wave[: 25 * 640], job.speaker[:25], job.identity, job.speaker_shape,
                       tmp_path / "video" / job.name)  # one second on video: the renderer is the slow part
    run_listener_jobs(gen, [clip], seed=3, renderer=renderer, side_by_side=True)
    assert clip.error is None
    info = probe_mp4(tmp_path / "video" / f"{TEST_CLIP}.mp4")
    assert (info.width, info.height, info.n_frames) == (64, 32, 25) and info.audio_codec == "aac"
    run_listener_jobs(gen, [job], seed=3, video=False)
    m = load_motion(tmp_path / f"{TEST_CLIP}.npz")
    assert m.motion.shape == (T, MOTION_DIM) and (m.states == LISTEN).all() and np.isfinite(m.motion).all()
    again = gen.generate([job], seed=3)[0].motion
    other = gen.generate([job], seed=4)[0].motion
    np.testing.assert_array_equal(again, m.motion)
    assert not np.array_equal(other, m.motion)
    # batched over jobs of different lengths: greedy decoding gives each job what it gets alone
    short = ListenerJob("short", job.wave[: 100 * 640], job.speaker[:100], None)
    both = gen.generate([job, short], temperature=0.0)
    alone = gen.generate([short], temperature=0.0)[0]
    assert both[1].n_frames == 100
    np.testing.assert_allclose(both[1].motion, alone.motion, atol=1e-5)
    ref = tmp_path / "ref.npz"  # a listener avatar given as a motion NPZ
    save_motion(ref, load_motion(data / "clips" / "dyad013_es.npz"))
    assert gen.identity(ref)[0].shape == (230,)
    with pytest.raises(InputError, match="listener-avatar"):
        gen.identity("nobody")


def test_evaluation_wiring_and_vq_metrics(tmp_path, runs, data):
    gen = ListenerGenerator.from_checkpoint(runs / "lm" / "checkpoint")
    jobs = dataset_jobs(data, "test", tmp_path / "pred")
    for j, m in zip(jobs, gen.generate(jobs, seed=0), strict=True):
        save_motion(j.out.with_suffix(".npz"), m)
    report = evaluate_listener(tmp_path / "pred", data, "test")
    overall = report.overall["prediction"]["listening"]
    for key in ("l2_exp", "l2_pose", "fd_exp", "fd_pose", "pfd_exp", "pfd_pose", "variation_exp", "diversity_exp"):
        assert isinstance(overall[key], float) and np.isfinite(overall[key]), key
    assert report.frames["listening"] == sum(len(j.speaker) for j in jobs)
    vq = vq_metrics(load_listener(runs / "vq" / "checkpoint"), data, "test")
    assert vq["rec_exp"] > 0 and vq["commit"] > 0 and 1.0 <= vq["perplexity"] <= 32
