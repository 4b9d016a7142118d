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
