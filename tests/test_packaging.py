"""A wheel of the repository installs and runs on its own: the presets and the demo checkpoint travel
as package data. The wheel goes into a fresh virtual environment that reuses this interpreter's
packages (``--system-site-packages``), so nothing is downloaded."""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_built_wheel_installs_and_generates(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, timeout=300, cwd=tmp_path)
    wheel = next(wheels.glob("ehead-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300)
    # run away from the checkout, with the venv first on PATH, as a user would
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EHEAD_MODELS")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    where = subprocess.run([str(py), "-c", "import ehead_cli; print(ehead_cli.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(env_dir), f"imported {where}, not the installed wheel"
    info = subprocess.run([str(env_dir / "bin" / "ehead"), "info", "--json"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert info.returncode == 0, info.stderr
    environment = json.loads(info.stdout)["environment"]
    assert environment["default_checkpoint_found"] and Path(environment["default_checkpoint"]).is_relative_to(env_dir)
    clip = REPO / "sample_data" / "clips" / "conv009_fr"
    gen = subprocess.run([str(env_dir / "bin" / "ehead"), "generate", "--audio", str(clip.with_suffix(".flac")),
                          "--states", str(clip.with_suffix(".csv")), "--out", str(tmp_path / "out"), "--size", "64"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert gen.returncode == 0, gen.stderr
    assert (tmp_path / "out" / "conv009_fr.mp4").stat().st_size > 0 and (tmp_path / "out" / "conv009_fr.npz").is_file()
