"""The listener family through the command line: ``ehead train / generate / eval / bench --family listener``,
their flag combinations (one-line errors naming the flag), resuming a listener run by its folder alone, and
a 2-process DDP run of both stages matching one process (gloo, CPU). The runs come from the
``listener_runs`` fixture, itself trained through ``ehead train --family listener``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from safetensors.torch import load_file

from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import LISTEN, MOTION_DIM
from ehead_cli.listener.checkpoint import load_listener
from ehead_cli.listener.data import TensorDict, VQWindows, load_dyads
from tests.conftest import LISTENER_TEST_CLIP, LISTENER_VAL_CONFIG, REPO

SAMPLE = REPO / "sample_data" / "dyadic"
PAIR = ["--speaker-audio", str(SAMPLE / "clips" / f"{LISTENER_TEST_CLIP}.ogg"),
        "--speaker-motion", str(SAMPLE / "speaker" / f"{LISTENER_TEST_CLIP}.npz")]
TRAIN = ["train", "--data", "d", "--out", "o"]


@pytest.mark.parametrize("args, message", [
    ([*TRAIN, "--family", "dog"], "--family must be one of embodiedhead, listener, got 'dog'"),
    ([*TRAIN, "--family", "listener"], "--family listener needs --stage vq, tokens or lm"),
    ([*TRAIN, "--family", "listener", "--stage", "1"], "--stage must be one of vq, tokens, lm, got '1'"),
    ([*TRAIN, "--stage", "vq"], "--stage vq is a listener stage: add --family listener"),
    ([*TRAIN, "--vq", "runs/vq"], "--vq applies to --family listener"),
    ([*TRAIN, "--lm", "gpt2"], "--lm applies to --family listener"),
    ([*TRAIN, "--family", "listener", "--stage", "vq", "--steps", "5"], "--steps applies to --family embodiedhead"),
    ([*TRAIN, "--family", "listener", "--stage", "lm", "--lr", "1e-3"], "--lr applies to --family embodiedhead"),
    ([*TRAIN, "--family", "listener", "--stage", "vq", "--vq", "x"], "--vq applies to --stage lm"),
    ([*TRAIN, "--family", "listener", "--stage", "vq", "--emoca", "x"], "--emoca applies to --stage lm"),
    ([*TRAIN, "--family", "listener", "--stage", "lm"], "--stage lm needs --vq VQ_RUN"),
    ([*TRAIN, "--family", "listener", "--stage", "tokens", "--vq", "x", "--lm", "y"],
     "--lm does not apply to --stage tokens"),
    (["train", "--family", "listener", "--stage", "vq"],
     "ehead train --family listener --stage vq needs --data DIR and --out RUN_DIR"),
    (["generate", "--family", "listener"], "--family listener needs --speaker-audio FILE with --speaker-motion NPZ"),
    (["generate", "--family", "listener", *PAIR, "--steps", "2"], "--steps applies to --family embodiedhead"),
    (["generate", "--family", "listener", *PAIR, "--audio", "a.wav"], "--audio applies to --family embodiedhead"),
    (["generate", *PAIR], "--speaker-audio applies to --family listener"),
    (["generate", "--family", "listener", *PAIR, "--temperature", "-1"], "--temperature must be a number >= 0"),
    (["generate", "--family", "listener", *PAIR, "--top-k", "0"], "--top-k must be >= 1, got 0"),
    (["generate", "--family", "listener", *PAIR, "--speaker-audio", "b.wav"],
     "give one --speaker-motion per --speaker-audio: got 2 --speaker-audio and 1 --speaker-motion"),
    (["generate", "--family", "listener", *PAIR, "--side-by-side", "--no-video"], "--side-by-side renders a video"),
    (["bench", "--family", "listener", "--steps", "2"], "--steps applies to --family embodiedhead"),
    (["bench", "--fps", "--checkpoint", "x"], "--checkpoint applies to --family listener"),
])
def test_wrong_combinations_are_one_line_errors(args, message):
    code, _, err = run_cli(*args)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_resume_finds_the_family_and_stage_in_the_run(listener_runs):
    vq = str(listener_runs / "vq")
    code, _, err = run_cli("train", "--resume", vq)  # already at its last step
    assert code == 0 and "already trained to step 2" in err.replace("\n", " ")
    code, _, err = run_cli("train", "--resume", vq, "--family", "embodiedhead")
    assert code == 2 and "is a listener run; leave out --family embodiedhead" in err
    code, _, err = run_cli("train", "--resume", vq, "--stage", "lm")
    assert code == 2 and "is a stage-vq run; leave out --stage lm" in err
    code, _, err = run_cli("train", "--resume", vq, "--seed", "3")
    assert code == 2 and "--seed cannot change a listener run being resumed" in err


def test_the_stages_wrote_their_runs(listener_runs):
    tokens = load_listener(listener_runs / "tokens")
    assert tokens.meta["stage"] == "tokens" and tokens.codebooks is not None and tokens.lm is None
    lm = load_listener(listener_runs / "lm" / "checkpoint")
    for k, v in tokens.codebooks.tensors().items():  # stage lm used the tokens run's codebooks
        assert torch.equal(lm.codebooks.tensors()[k], v), k
    assert (listener_runs / "lm" / "best" / "config.json").is_file()
    assert "stage = \"lm\"" in (listener_runs / "lm" / "config.toml").read_text()


def test_generate_batches_pairs_and_reports_a_bad_one(tmp_path, listener_runs):
    other = ["--speaker-audio", str(SAMPLE / "clips" / "dyad013_es.ogg"),
             "--speaker-motion", str(SAMPLE / "speaker" / "dyad013_es.npz")]
    missing = ["--speaker-audio", str(tmp_path / "gone.wav"), "--speaker-motion", str(tmp_path / "gone.npz")]
    code, out, err = run_cli("generate", "--family", "listener", "--checkpoint",
                             str(listener_runs / "lm"), *PAIR, *other, *missing, "--listener-avatar", "listener02",
                             "--no-video", "--seed", "1", "--out", str(tmp_path / "out"))
    assert code == 1 and err.strip() == f"error: gone: {tmp_path / 'gone.npz'}: motion file not found"
    for name, T in ((LISTENER_TEST_CLIP, load_motion(PAIR[3]).n_frames), ("dyad013_es", None)):
        m = load_motion(tmp_path / "out" / f"{name}.npz")
        assert m.motion.shape[1] == MOTION_DIM and (m.states == LISTEN).all() and np.isfinite(m.motion).all()
        assert T is None or m.n_frames == T
        assert str(tmp_path / "out" / f"{name}.npz") in out
    code, _, err = run_cli("generate", "--family", "listener", "--checkpoint", str(listener_runs / "lm"), *PAIR,
                           "--listener-avatar", "nobody", "--out", str(tmp_path / "x"))
    assert code == 2 and "--listener-avatar nobody: neither a motion NPZ nor a trained identity" in err
    code, _, err = run_cli("generate", "--family", "listener", "--checkpoint",
                           str(listener_runs / "vq"), *PAIR, "--out", str(tmp_path / "x"))
    assert code == 2 and "has no language model" in err
    clip = REPO / "sample_data" / "clips" / "conv009_fr"
    code, _, err = run_cli("generate", "--audio", str(clip.with_suffix(".flac")), "--states",
                           str(clip.with_suffix(".csv")), "--checkpoint", str(listener_runs / "lm"),
                           "--out", str(tmp_path))
    assert code == 2 and "a listener checkpoint; add --family listener" in err


@pytest.mark.slow  # renders 11 s of video twice over: about 10 s
def test_generate_side_by_side_video(tmp_path, listener_runs):
    from ehead_cli.io.video import probe_mp4

    code, _, err = run_cli("generate", "--family", "listener", "--checkpoint",
                           str(listener_runs / "lm"), *PAIR, "--side-by-side", "--size", "32", "--out", str(tmp_path))
    assert code == 0, err
    info = probe_mp4(tmp_path / f"{LISTENER_TEST_CLIP}.mp4")
    assert (info.width, info.height) == (64, 32) and info.audio_codec == "aac"


def test_eval_takes_the_speaker_from_a_dyadic_folder_and_reports_the_vq(tmp_path, listener_runs, dyadic_subset):
    from ehead_cli.io.motionfile import save_motion
    from ehead_cli.listener.generate import ListenerGenerator, dataset_jobs

    gen = ListenerGenerator.from_checkpoint(listener_runs / "lm", device="cpu")
    jobs = dataset_jobs(dyadic_subset, "test", tmp_path / "pred")
    for j, m in zip(jobs, gen.generate(jobs, seed=0), strict=True):
        save_motion(j.out.with_suffix(".npz"), m)
    code, out, err = run_cli("eval", "--pred", str(tmp_path / "pred"), "--gt", str(dyadic_subset),
                             "--split", "test", "--metrics", "listening", "--vq-checkpoint", str(listener_runs / "vq"),
                             "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert f"P-FD against the speaker's motion in {dyadic_subset / 'speaker'}" in err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    listening = report["overall"]["prediction"]["listening"]
    assert all(isinstance(listening[k], float) for k in ("pfd_exp", "pfd_pose", "l2_exp", "fd_exp")), listening
    vq = json.loads((tmp_path / "report" / "vq.json").read_text())
    assert vq["split"] == "test" and vq["rec_exp"] > 0 and 1 <= vq["perplexity"] <= 32
    assert "PPL" in out


def test_bench_measures_the_listener(tmp_path, listener_runs):
    code, out, err = run_cli("bench", "--family", "listener", "--checkpoint",
                             str(listener_runs / "lm"), "--batch-sizes", "1,2", "--seconds", "1", "--repeats", "1",
                             "--threads", "1", "--json", str(tmp_path))
    assert code == 0, err
    result = json.loads(next(tmp_path.glob("listener-cpu-*.json")).read_text())
    rows = result["results"]["listener"]
    assert [r["batch"] for r in rows] == [1, 2] and [r["frames"] for r in rows] == [25, 50]
    assert all(r["end_to_end_fps"] > 0 and r["lm_fps"] > 0 for r in rows)
    assert result["environment"]["load_average_before"] is not None and "LM alone" in out


@pytest.mark.slow  # two torchrun processes training both stages: about 25 s on 2 shared cores
def test_two_process_ddp_matches_one_process(tmp_path, listener_runs, dyadic_subset):
    """Both stages under torchrun with 2 processes (gloo): the same weights as the fixture's single
    process, the VQ-VAE's dead-code resets included (they fire from the first step at this size)."""
    cfg = tmp_path / "val.toml"
    cfg.write_text(LISTENER_VAL_CONFIG)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    script = (f"from ehead_cli.listener.train import train_vq, train_lm\n"
              f"train_vq({str(dyadic_subset)!r}, {str(tmp_path / 'vq')!r}, 'tiny', {str(cfg)!r}, progress=False)\n"
              f"train_lm({str(dyadic_subset)!r}, {str(tmp_path / 'lm')!r}, {str(listener_runs / 'tokens')!r}, "
              f"config_file={str(cfg)!r}, progress=False)\n")
    (tmp_path / "ddp.py").write_text(script)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29537",
                          str(tmp_path / "ddp.py")], capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    a = load_file(str(tmp_path / "lm" / "checkpoint" / "model.safetensors"))
    b = load_file(str(listener_runs / "lm" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # The VQ-VAE is compared by what it computes: the encoder's weights that only add per-channel
    # constants before its first instance norm (biases, inputs constant over a window) get rounding noise
    # as their gradient, which Adam's normalisation turns into steps of +-lr, differently in 1 and 2
    # processes; the norm removes what they add.
    one, two = load_listener(listener_runs / "vq"), load_listener(tmp_path / "vq")
    windows = VQWindows(load_dyads(dyadic_subset).split("train"), one.norm, one.identities, 32)
    batch = TensorDict.collate([windows[i] for i in range(0, len(windows), 5)])
    with torch.no_grad():
        x, y = one.vq(batch["motion"], batch["stats"]), two.vq(batch["motion"], batch["stats"])
    assert torch.equal(x["codes"], y["codes"])
    torch.testing.assert_close(y["recon"], x["recon"], atol=3e-4, rtol=0)
    # codebook entries are EMA sums all-reduced in another order by gloo: rounding of up to 1.7e-5 measured
    torch.testing.assert_close(two.vq.quantizer.codebook, one.vq.quantizer.codebook, atol=5e-5, rtol=0)
    torch.testing.assert_close(two.vq.quantizer.usage, one.vq.quantizer.usage)


@pytest.mark.parametrize("shipped", [False, True], ids=["no-shipped-listener", "shipped-listener"])
def test_the_shipped_listener_or_a_clear_error(tmp_path, monkeypatch, request, shipped):
    """Both branches, each on its own models folder: without a shipped listener a clear error, with one
    (the fixture's trained tiny listener, checksummed in the manifest) a generated clip."""
    from ehead_cli.listener.generate import default_listener

    models = request.getfixturevalue("models_with_listener" if shipped else "models_without_listener")
    monkeypatch.setenv("EHEAD_MODELS", str(models))
    assert (default_listener() / "config.json").is_file() == shipped  # the branch this case is meant to run
    code, _, err = run_cli("generate", "--family", "listener", *PAIR, "--no-video",
                           "--out", str(tmp_path))
    if not (default_listener() / "config.json").is_file():
        assert code == 2 and "pass --checkpoint" in err
        return
    assert code == 0, err
    assert load_motion(tmp_path / f"{LISTENER_TEST_CLIP}.npz").n_frames == load_motion(Path(PAIR[3])).n_frames
