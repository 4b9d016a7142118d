"""On a CUDA device: generation matches the CPU, bf16 and the compiled (CUDA-graph) sampler stay
close to fp32 eager, training runs (eager and compiled), and the benchmark runs. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO

from ehead_cli.generate.generator import Generator, default_checkpoint
from ehead_cli.io.audio import load_audio
from ehead_cli.io.states import load_states
from ehead_cli.layout import JAW
from ehead_cli.model.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CLIP = REPO / "sample_data" / "clips" / "conv009_fr"


@pytest.fixture(scope="module")
def clip():
    audio = load_audio(CLIP.with_suffix(".flac"))
    return audio, load_states(CLIP.with_suffix(".csv"), n_frames=-(-len(audio) // 640))


def _generate(device: str, dtype: torch.dtype, clip, compile_mode: str | None = None) -> np.ndarray:
    gen = Generator(load_checkpoint(default_checkpoint()), device, steps=4, dtype=dtype)
    if compile_mode:
        gen.compile(compile_mode)
    return gen.generate(*clip).motion


def _jaw_r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a[:, JAW.start], b[:, JAW.start])[0, 1])


def test_fp32_on_cuda_matches_cpu(clip, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuDNN convolutions in full fp32
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = _generate("cpu", torch.float32, clip)
    gpu = _generate("cuda", torch.float32, clip)
    assert gpu.shape == cpu.shape
    # rounding only: (the motion's mean magnitude is ~1e-2; bf16 on the CPU moves it by ~7e-3 of that)
    np.testing.assert_allclose(gpu, cpu, atol=5e-4)
    assert np.abs(gpu - cpu).mean() < 1e-3 * np.abs(cpu).mean()


def test_bf16_and_compiled_cuda_graphs_stay_close_to_fp32(clip):
    ref = _generate("cuda", torch.float32, clip)
    for mode in (None, "reduce-overhead"):
        out = _generate("cuda", torch.bfloat16, clip, compile_mode=mode)
        # bf16 autocast on the CPU, measured: jaw r 0.99999, mean |diff| 0.7 % of the mean |motion|
        assert _jaw_r(out, ref) > 0.995, mode
        assert np.abs(out - ref).mean() < 0.05 * np.abs(ref).mean(), mode


@pytest.mark.parametrize("compile", [False, True])
def test_train_on_cuda(tmp_path, compile):
    from ehead_cli.train.logging import read_metrics
    from ehead_cli.train.stage1 import train

    run = train(REPO / "sample_data", tmp_path / "run", "tiny", device="cuda", progress=False,
                overrides={"steps": 3, "batch_size": 8, "workers": 0, "log_every": 1, "val_every": 0,
                           "compile": compile})
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in rows)
    gen = Generator(load_checkpoint(run / "checkpoint"), "cuda", steps=1)
    assert np.isfinite(gen.generate(np.zeros(16000, np.float32), np.ones(25, np.int8)).motion).all()


def test_bench_on_cuda(tmp_path):
    from ehead_cli.bench.run import BenchConfig, run_bench, write_json

    cfg = BenchConfig(preset="tiny", device="cuda", batch_sizes=(1, 4), steps=(1,), dtype="bf16", size=64,
                      seconds=1.0, repeats=2, warmup=1, render_batch_sizes=(4,))
    result = run_bench(cfg)
    assert result["environment"]["device_type"] == "cuda" and result["targets"]["motion_only_fps_batched"]
    assert all(r["motion_only_fps"] > 0 for r in result["results"]["motion"])
    assert write_json(result, tmp_path).name.startswith("cuda-")
