"""Dataset windows and Stage-I training: shapes, history padding, data errors, a two-step train on
sample_data, exact resume, and a 2-process DDP run (gloo, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import REPO, write_dataset
from safetensors.torch import load_file

from ehead_cli.errors import InputError
from ehead_cli.io.dataset import load_index
from ehead_cli.layout import LISTEN
from ehead_cli.model.config import preset
from ehead_cli.model.encoders import MelEncoder
from ehead_cli.train.config import lr_at, resolve_config
from ehead_cli.train.data import WindowDataset, fit_stats
from ehead_cli.train.logging import read_metrics
from ehead_cli.train.stage1 import train

FAST = {"workers": 0, "log_every": 1, "batch_size": 4}


def test_windows_shapes_and_history_padding(toy_dataset):
    cfg = preset("tiny")
    index = load_index(toy_dataset, min_frames=cfg.window)
    clips = index.split("train")
    stats = fit_stats(clips, cfg.window)
    ds = WindowDataset(clips, stats, cfg.window, cfg.history_frames, MelEncoder(cfg.audio), stride=10, seed=0)
    first = ds[0]  # clip a, start in [0, 9]
    assert first.x1.shape == (100, 115) and first.x0.shape == (100, 115)
    assert first.history.shape == (75, 115) and first.history_states.shape == (75,)
    assert first.front.shape == (200, cfg.audio.n_mels)
    assert first.shape.shape == (100,) and first.ref.shape == (115,) and first.magnitude.shape == (2,)
    assert 0 <= first.t <= 1 and ((first.magnitude >= 0) & (first.magnitude <= 1)).all()
    # the padding rule: history frames before the clip start are the reference frame, listening
    _, lo, hi = ds.slots[0]
    s = next(s for s in range(lo, hi + 1) if torch.equal(first.x1, torch.from_numpy(ds._norm[0][s:s + 100])))
    n_pad = 75 - s
    assert torch.equal(first.history[:n_pad], first.ref.expand(n_pad, -1))
    assert (first.history_states[:n_pad] == LISTEN).all()
    torch.testing.assert_close(first.history[n_pad:], torch.from_numpy(ds._norm[0][:s]))
    # deep inside a clip: real history, no padding
    deep = next(i for i, (ci, lo, _) in enumerate(ds.slots) if lo >= 80)
    item = ds[deep]
    assert not torch.equal(item.history[0], item.ref)
    # deterministic per (seed, epoch, index); the epoch changes the random parts
    assert all(torch.equal(a, b) for a, b in zip(ds[3].tensors().values(), ds[3].tensors().values(), strict=True))
    ds.set_epoch(1)
    assert not torch.equal(ds[3].x0, first.x0)


def test_a_clip_shorter_than_a_window_is_padded_and_masked(tmp_path):
    root = write_dataset(tmp_path / "d", {"three_s": ("train", 3.0)})  # 75 frames, like a GRID clip
    cfg = preset("tiny")
    clips = load_index(root).split("train")
    ds = WindowDataset(clips, fit_stats(clips, 100), 100, 75, MelEncoder(cfg.audio), stride=10, seed=0)
    assert len(ds) == 1
    item = ds[0]
    assert item.mask[:75].tolist() == [1.0] * 75 and item.mask[75:].tolist() == [0.0] * 25
    assert (item.states[75:] == LISTEN).all()  # silence and listening past the end, as in generation
    assert item.front.shape == (200, cfg.audio.n_mels)
    silence = MelEncoder(cfg.audio).frontend(torch.zeros(1, 640))[0, 0]
    torch.testing.assert_close(item.front[-1], silence)
    # padded frames do not count in the loss
    from ehead_cli.model.flow import PathSample, flow_loss

    x1, x0, t = item.x1[None], item.x0[None], item.t[None]
    path = PathSample(x0, x1, t, x0 + t * (x1 - x0), x1 - x0)
    v = path.dx_t.clone()
    v[:, 80:] += 5.0  # wrong only where the clip has ended
    exact = flow_loss(path.dx_t, path, mask=item.mask[None])["loss"].item()
    assert flow_loss(v, path, mask=item.mask[None])["loss"].item() == pytest.approx(exact, abs=1e-6)
    assert flow_loss(v, path)["loss"].item() > exact + 1.0


def test_a_dataset_smaller_than_a_batch_is_repeated(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", {"g1": ("train", 3.0), "g2": ("train", 3.0)})  # two GRID-sized clips
    run = train(root, tmp_path / "run", "tiny", overrides={**FAST, "steps": 2, "batch_size": 5}, progress=False)
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    err = capsys.readouterr().err.replace("\n", " ")
    assert "each appears 3 times per epoch" in err
    assert "2 training clip(s) shorter than one window (100 frames) are padded" in err and "g1, g2" in err


def test_window_audio_is_the_windows_own(toy_dataset):
    cfg = preset("tiny")
    clips = load_index(toy_dataset, min_frames=100).split("train")
    enc = MelEncoder(cfg.audio)
    ds = WindowDataset(clips, fit_stats(clips, 100), 100, 75, enc, stride=10, seed=0)
    item = ds[5]
    ci, _, _ = ds.slots[5]
    wave = sf.read(clips[ci].audio_path, dtype="float32")[0]
    full = enc.frontend(torch.from_numpy(wave)[None])[0]
    matches = [s for s in range(0, clips[ci].n_frames - 99) if torch.allclose(full[2 * s:2 * s + 200], item.front)]
    assert matches and torch.equal(item.x1, torch.from_numpy(ds._norm[ci][matches[0]:matches[0] + 100]))


def test_a_streaming_cut_pads_the_window_as_a_live_one_and_masks_past_the_cut(toy_dataset):
    cfg = preset("tiny")
    clips = load_index(toy_dataset, min_frames=100).split("train")
    enc = MelEncoder(cfg.audio)
    stats = fit_stats(clips, 100)
    plain = WindowDataset(clips, stats, 100, 75, enc, stride=10, seed=0)
    always = WindowDataset(clips, stats, 100, 75, enc, stride=10, seed=0, stream_cut=1.0)
    cuts = []
    for i in range(len(always)):
        item = always[i]
        c = int(item.mask.sum())  # every frame before the cut counts, none after
        assert 1 <= c < 100 and item.mask[:c].eq(1).all() and item.mask[c:].eq(0).all()
        assert (item.states[c:] == LISTEN).all()
        ci, lo, hi = always.slots[i]
        s = next(s for s in range(lo, hi + 1) if torch.equal(item.x1, torch.from_numpy(always._norm[ci][s:s + 100])))
        # the front end is that of the window's audio with silence from the cut, as a live window's
        wave = sf.read(clips[ci].audio_path, dtype="float32", start=640 * s, stop=640 * (s + 100))[0]
        wave[640 * c:] = 0.0
        torch.testing.assert_close(item.front, enc.frontend(torch.from_numpy(wave)[None])[0])
        np.testing.assert_array_equal(item.states[:c].numpy(), clips[ci].states[s:s + c])
        cuts.append(c)
    assert len(set(cuts)) > len(cuts) // 2  # cut frames drawn, not fixed
    # never cut: the examples of a run without cuts are the ones it always had
    some = WindowDataset(clips, stats, 100, 75, enc, stride=10, seed=0, stream_cut=0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain[4].tensors().values(), some[4].tensors().values(), strict=True))
    half = WindowDataset(clips, stats, 100, 75, enc, stride=10, seed=0, stream_cut=0.5)
    cut_share = np.mean([half[i].mask.sum().item() < 100 for i in range(len(half))])
    assert 0.2 < cut_share < 0.8


def test_stream_cut_is_a_probability_and_on_in_the_shipped_presets():
    from ehead_cli.errors import ConfigError
    from ehead_cli.train.config import TrainConfig

    with pytest.raises(ConfigError, match=r"train.stream_cut is a probability in \[0, 1\], got 1.5"):
        TrainConfig(stream_cut=1.5).validate()
    for name in ("tiny", "small", "paper"):
        assert resolve_config(name, None, {})["train"].stream_cut == 0.3


def test_the_stream_cut_flag_is_checked_and_reaches_the_run(tiny_checkpoint, tmp_path):
    from cli_runner import run_cli

    code, _, err = run_cli("train", "--data", "sample_data", "--out", str(tmp_path / "r"), "--stream-cut", "1.5")
    assert code == 2 and "--stream-cut is a probability in [0, 1], got 1.5" in err
    code, _, err = run_cli("train", "--stage", "2", "--data", "sample_data", "--out", str(tmp_path / "r"),
                           "--init", str(tiny_checkpoint), "--avatar", "builtin", "--stream-cut", "0.1")
    assert code == 2 and "--stream-cut applies to Stage I (--stage 1)" in err
    assert resolve_config("tiny", None, {"stream_cut": 0.0})["train"].stream_cut == 0.0  # the paper's, one flag away


def test_data_problems_name_the_clip(tmp_path, capsys):
    with pytest.raises(InputError, match="data folder not found"):
        load_index(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no manifest.csv"):
        load_index(tmp_path / "empty")
    root = write_dataset(tmp_path / "d", {"ok": ("train", 5.0), "short": ("train", 0.6), "long": ("train", 5.0)})
    sf.write(root / "clips" / "long.flac", np.zeros(16000 * 7, np.float32), 16000)  # 7 s audio, 5 s motion
    idx = load_index(root)
    assert [c.id for c in idx.clips] == ["ok"]
    assert any("clip short" in p and "shorter than the minimum of 25 frames" in p for p in idx.problems)
    assert any("clip long" in p and "audio has 175 frames but motion/states have 125" in p for p in idx.problems)
    df = pd.read_csv(root / "manifest.csv")
    df.loc[0, "split"] = "training"
    df.to_csv(root / "manifest.csv", index=False)
    with pytest.raises(InputError, match=r"manifest.csv:2: split 'training'"):
        load_index(root)
    only_short = write_dataset(tmp_path / "s", {"short": ("train", 0.6)})
    with pytest.raises(InputError, match="no usable training clips"):
        train(only_short, tmp_path / "run", "tiny", overrides=FAST, progress=False)
    assert "clip short" in capsys.readouterr().err


def test_schedule_warmup_and_decay():
    cfg = resolve_config("tiny", None, {"steps": 110, "lr": 1e-3})["train"]
    assert lr_at(cfg, 0) == pytest.approx(1e-4)  # warm-up over 10 steps
    assert lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 109) == pytest.approx(1e-4, rel=0.01)  # cosine to 10 %
    paper = resolve_config("paper", None, {})["train"]
    assert (paper.steps, paper.batch_size, paper.lr, paper.warmup_steps) == (80000, 64, 6e-4, 2000)


def test_two_step_train_on_sample_data(tmp_path):
    data = REPO / "sample_data"
    assert (data / "manifest.csv").is_file(), "the committed sample_data/manifest.csv is missing"
    run = train(data, tmp_path / "run", "tiny", overrides={**FAST, "steps": 2, "val_windows": 4}, progress=False)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert "val_loss" in rows[-1]
    for name in ("config.toml", "metrics.csv", "loss.png", "checkpoint/config.json", "checkpoint/model.safetensors",
                 "state/state.safetensors"):
        assert (run / name).is_file(), name


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def test_interrupted_and_resumed_equals_uninterrupted(toy_dataset, tmp_path):
    ov = {**FAST, "steps": 4}
    full = train(toy_dataset, tmp_path / "full", "tiny", overrides=ov, progress=False)
    part = train(toy_dataset, tmp_path / "part", "tiny", overrides=ov, stop_after=2, progress=False)
    assert [r["step"] for r in read_metrics(part)] == [1, 2]
    train(None, part, resume=True, overrides={"workers": 1}, progress=False)  # other worker count: same batches
    a, b = read_metrics(full), read_metrics(part)
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa, wb = _weights(full), _weights(part)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(InputError, match="already holds a training run"):
        train(toy_dataset, part, "tiny", overrides=ov, progress=False)


@pytest.mark.slow  # two processes (gloo) and a reference run: ~11 s
def test_two_process_ddp_matches_one_process(toy_dataset, tmp_path):
    args = ["train", "--data", str(toy_dataset), "--preset", "tiny", "--steps", "2", "--batch-size", "4",
            "--workers", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29533", "-m", "ehead_cli", *args, "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = train(toy_dataset, tmp_path / "one", "tiny", overrides={"steps": 2, "batch_size": 4, "workers": 0},
                   progress=False)
    wa, wb = _weights(tmp_path / "ddp"), _weights(single)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5


def test_train_and_generate_with_a_frozen_hubert_encoder(toy_dataset, tmp_path):
    """The paper's audio path: a frozen HuBERT (tiny random one in the mHuBERT-147 layout) encodes
    each window on the fly; the checkpoint stores no encoder weights and names its identity."""
    from test_encoders import write_tiny_hubert

    from ehead_cli.generate.generator import Generator
    from ehead_cli.model.checkpoint import load_checkpoint

    hubert = write_tiny_hubert(tmp_path / "hubert")
    cfg = tmp_path / "hubert.toml"
    cfg.write_text('[model.audio]\nkind = "hubert"\nn_layers = 3\ndim = 16\n')
    run = train(toy_dataset, tmp_path / "run", "tiny", config_file=cfg, overrides={**FAST, "steps": 2},
                hubert_path=str(hubert), progress=False)
    weights = _weights(run)
    assert weights and not any(k.startswith("encoder.") for k in weights)
    model = load_checkpoint(run / "checkpoint", hubert_path=hubert)
    assert model.encoder.frozen and model.encoder.identity.startswith("hubert-")
    out = Generator(model, "cpu", steps=1).generate(np.zeros(16000 * 2, np.float32), np.ones(50, np.int8))
    assert out.motion.shape == (50, 115) and np.isfinite(out.motion).all()


def test_generate_accepts_the_run_folder_as_checkpoint(toy_dataset, tmp_path):
    from cli_runner import run_cli

    run = train(toy_dataset, tmp_path / "run", "tiny", overrides={**FAST, "steps": 1}, progress=False)
    clip = next((toy_dataset / "clips").glob("*.flac"))
    csv = tmp_path / "speak.csv"
    csv.write_text("start,end,state\n0,2,speak\n")
    code, _, err = run_cli("generate", "--audio", str(clip), "--states", str(csv),
                           "--checkpoint", str(run), "--no-video", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert (tmp_path / "out" / f"{clip.stem}.npz").is_file()
    code, _, err = run_cli("generate", "--audio", str(clip), "--states", str(csv),
                           "--checkpoint", str(tmp_path), "--no-video", "--out", str(tmp_path / "out"))
    assert code == 2 and "not a checkpoint folder" in err
