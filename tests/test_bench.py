"""``ehead bench``: it runs, reports every measurement with its device, and writes JSON. (Speed
targets are checked by running the benchmark, never asserted here.)"""

from __future__ import annotations

import json

from ehead_cli.bench.run import BenchConfig, device_slug, run_bench, write_json


def test_bench_reports_every_measurement(tmp_path):
    cfg = BenchConfig(preset="tiny", device="cpu", batch_sizes=(1, 2), steps=(1,), render=True, size=32,
                      seconds=1.0, repeats=2, warmup=0, render_batch_sizes=(2,))
    result = run_bench(cfg)
    env, res = result["environment"], result["results"]
    assert env["device_type"] == "cpu" and env["torch"] and env["threads"] >= 1 and env["dtype"] == "fp32"
    assert [(r["steps"], r["batch"]) for r in res["motion"]] == [(1, 1), (1, 2)]
    assert all(r["motion_only_fps"] > 0 and r["motion_with_audio_fps"] > 0 for r in res["motion"])
    assert res["latency"][0]["p95_ms"] >= res["latency"][0]["p50_ms"] > 0
    assert res["render"][0]["render_fps"] > 0 and res["end_to_end"][0]["end_to_end_fps"] > 0
    assert result["paper"]["motion_only_fps"] == 900 and "different hardware" in result["paper"]["note"]
    path = write_json(result, tmp_path)
    assert path.name == f"{device_slug(env)}.json" and path.name.startswith("cpu-")
    assert json.loads(path.read_text())["results"]["motion"][0]["batch"] == 1


def test_result_names_tell_settings_apart():
    env = {"device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "threads": 16, "dtype": "fp32",
           "compile": False}
    names = {device_slug({**env, "dtype": d, "compile": c}) for d in ("fp32", "bf16") for c in (False, True)}
    assert "cuda-nvidia-h100-80gb-hbm3" in names and "cuda-nvidia-h100-80gb-hbm3-bf16-compile" in names
    assert len(names) == 4
    cpu = {"device_type": "cpu", "device_name": "AMD EPYC 7B13 (2 threads)", "threads": 2, "dtype": "fp32"}
    assert device_slug(cpu) == "cpu-amd-epyc-7b13-2threads"


def test_cli_bench_writes_json_with_the_resolved_dtype(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "ehead_cli", "bench", "--fps", "--preset", "tiny", "--device", "cpu",
                        "--batch-sizes", "1", "--steps", "1", "--no-render", "--repeats", "1", "--json", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    assert result["environment"]["dtype"] == "fp32" and path.name.startswith("cpu-")  # auto on a CPU
    assert "motion generation" in r.stdout and "different hardware" in r.stdout


def test_stage2_bench_times_whole_steps_with_a_drawn_head(tmp_path):
    import torch

    from ehead_cli.bench.stage2 import (
        Stage2BenchConfig,
        _batch,
        _model,
        _renderer,
        run_stage2_bench,
        write_stage2_json,
    )
    from ehead_cli.train.stage2 import RefineConfig, Stage2Model, Stage2Step

    cfg = Stage2BenchConfig(preset="tiny", device="cpu", batch_sizes=(1, 2), frames_per_window=2, size=32,
                            repeats=1, warmup=0)
    result = run_stage2_bench(cfg)
    rows = result["results"]["stage2"]
    assert [(r["perceptual"], r["batch"]) for r in rows] == [("ms-ssim", 1), ("ms-ssim", 2), ("vgg16", 1),
                                                               ("vgg16", 2)]
    for r in rows:
        assert r["samples_per_s"] > 0 and abs(r["rendered_frames_per_s"] - 2 * r["samples_per_s"]) < 1e-6
        assert abs(r["step_ms"] - 1000 * r["batch"] / r["samples_per_s"]) < 1e-6 and r["size"] == 32
    assert result["environment"]["dtype"] == "fp32" and result["model"]["renderer"] == "mesh"
    assert result["model"]["renderer_lr_scale"] == 0.5  # the preset's [stage2.refine]
    path = write_stage2_json(result, tmp_path)
    assert path.name.startswith("stage2-cpu-") and path.name.endswith("-tiny-32px.json")
    assert json.loads(path.read_text())["results"]["stage2"][0]["batch"] == 1

    # what is timed draws a head of the usual size: the random model's endpoint, rendered, covers part of the image
    head = _model("tiny", torch.device("cpu"))
    _, renderer, camera = _renderer(cfg, torch.device("cpu"))
    batch = _batch(head, 2, 2, 32, torch.device("cpu"))
    step = Stage2Step(Stage2Model(head, {"bench": renderer}), RefineConfig(frames_per_window=2), ["bench"], [camera],
                      None)
    with torch.no_grad():
        neutral = renderer.images(torch.zeros(300), torch.zeros(1, 115)).image
        image = step.render(batch.shape, torch.zeros(2, 2, 115), [0, 0])
    background = neutral[0, 0, 0]
    covered = ((neutral[0] - background).abs().sum(-1) > 1e-3).float().mean()
    assert 0.2 < float(covered) < 0.95 and torch.allclose(image[0, 0], neutral[0], atol=1e-6)


def test_cli_stage2_bench_and_its_flags(tmp_path):
    from cli_runner import run_cli

    code, out, err = run_cli("bench", "--stage2", "--preset", "tiny", "--device", "cpu", "--batch-sizes", "1",
                             "--frames-per-window", "1", "--size", "32", "--repeats", "1", "--json",
                             str(tmp_path / "s2.json"))
    assert code == 0, out + err
    assert "Stage II training" in out and "samples/s" in out
    assert json.loads((tmp_path / "s2.json").read_text())["settings"]["batch_sizes"] == [1]
    code, _, err = run_cli("bench", "--stage2", "--steps", "4")  # a user error: one line, status 2
    assert code == 2 and "--steps does not apply to --stage2" in err
    code, _, err = run_cli("bench", "--fps", "--frames-per-window", "4")
    assert code == 2 and "--frames-per-window applies to --stage2" in err
