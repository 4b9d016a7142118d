"""The command line as a user runs it: in its own process (``run_cli_process``)."""

from __future__ import annotations

import json

from cli_runner import run_cli_process


def test_info_paper_json():
    r = run_cli_process("info", "--preset", "paper", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key, value in {"d_model": 448, "depth": 8, "heads": 8, "mlp_hidden": 1792, "window": 100,
                       "history_frames": 75, "history_tokens": 20, "seq_len": 120, "token_dim": 116,
                       "cond_dim": 896}.items():
        assert d[key] == value, key
    assert 40e6 < d["params_trainable"] < 80e6


def test_info_lists_presets_and_assets(tmp_path):
    import os

    env = dict(os.environ, EHEAD_FLAME=str(tmp_path / "nowhere.pkl"), COLUMNS="200")
    r = run_cli_process("info", "--json", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [p["preset"] for p in d["presets"]] == ["paper", "small", "tiny"]
    flame = next(a for a in d["assets"] if a["asset"] == "flame")
    assert flame["configured"].endswith("nowhere.pkl") and flame["found"] is False
    from ehead_cli.devices import native_bf16, resolve_device

    expected = "bf16" if native_bf16(resolve_device(None)) else "fp32"
    assert d["environment"]["compute_dtype"] == expected
    r = run_cli_process("info", env=env)
    assert r.returncode == 0 and "EHEAD_HUBERT" in r.stdout and "MISSING" in r.stdout
    assert f"in {expected} by default" in r.stdout


def test_user_errors_are_one_line_without_traceback():
    r = run_cli_process("info", "--preset", "enormous")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "--preset" in r.stderr and "paper" in r.stderr


def test_every_asset_flag_exists_on_the_commands_that_use_it():
    import re
    from pathlib import Path

    import typer

    from ehead_cli.assets import ASSETS
    from ehead_cli.cli import app

    commands = typer.main.get_command(app).commands
    for a in ASSETS.values():
        for name in a.commands:
            options = {o for p in commands[name].params for o in p.opts}
            assert a.flag in options, f"ehead {name} does not take {a.flag}"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Assets you bring"):]
    listed = set(re.findall(r"^\| [^|]+ \| `(--[a-z-]+)` \|", table, re.M))
    assert listed == {a.flag for a in ASSETS.values()}, listed


def test_generate_reports_each_failure_once_and_keeps_piped_tables_whole(tmp_path):
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    clip = repo / "sample_data" / "clips" / "conv009_fr"
    out = tmp_path / ("a-rather-long-output-folder-name-" * 3)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = run_cli_process("generate", "--audio", str(clip.with_suffix(".flac")), "--states",
                        str(clip.with_suffix(".csv")), "--audio", str(tmp_path / "missing.wav"), "--states",
                        str(tmp_path / "missing.csv"), "--no-video", "--out", str(out), env=env)
    assert r.returncode == 1
    assert str(out / "conv009_fr.npz") in r.stdout  # not cut at 80 columns when piped
    assert r.stdout.count("missing.wav") == 0 and r.stderr.count("missing.wav") == 1, (r.stdout, r.stderr)
    assert r.stderr.strip() == f"error: missing: {tmp_path / 'missing.wav'}: audio file not found"
