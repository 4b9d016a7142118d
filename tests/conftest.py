"""Shared fixtures. Tests run on CPU, offline, in a temp folder; real media under ../shared/data
is used only by tests marked ``media`` and skipped when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_runner import run_cli

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(autouse=True)
def _private_feature_cache(tmp_path_factory, monkeypatch):
    """Tests never write into the user's ~/.cache/ehead."""
    monkeypatch.setenv("EHEAD_CACHE", str(tmp_path_factory.getbasetemp() / "ehead-cache"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def shared_media(shared_data: Path, folder: str, pattern: str) -> list[Path]:
    """The files of ``../shared/data/FOLDER`` matching ``pattern``, sorted; skips (naming what is missing)
    when there are none, so a loop over them never passes without looking at a file."""
    files = sorted((shared_data / folder).glob(pattern))
    if not files:
        pytest.skip(f"../shared/data/{folder} has no {pattern}")
    return files


def write_dataset(root: Path, clips: dict[str, tuple[str, float]], seed: int = 0) -> Path:
    """A small dataset folder in the DATASET layout: per clip (split, seconds). The audio is
    amplitude-modulated noise; the jaw follows its envelope while speaking (a learnable toy)."""
    import numpy as np
    import pandas as pd
    import soundfile as sf

    from ehead_cli.io.motionfile import Motion, save_motion
    from ehead_cli.layout import JAW, ROT, SAMPLES_PER_FRAME, n_frames_for

    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for cid, (split, seconds) in clips.items():
        n = int(seconds * 16000)
        T = n_frames_for(n)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(T) / 25 + rng.uniform(0, 6))
        states = np.where((np.arange(T) // 50) % 2 == 0, 1, -1).astype(np.int8)
        wave = rng.normal(size=T * SAMPLES_PER_FRAME) * 0.1 * np.repeat(env, SAMPLES_PER_FRAME)
        sf.write(root / "clips" / f"{cid}.flac", wave[:n].astype(np.float32), 16000)
        motion = (rng.normal(size=(T, 115)) * 0.02).astype(np.float32)
        motion[:, JAW.start] = np.where(states > 0, 0.2 * env, 0.0)
        motion[:, ROT.start] = 0.05 * np.sin(np.arange(T) / 10)
        save_motion(root / "clips" / f"{cid}.npz", Motion(motion, rng.normal(size=300), states, 25))
        rows.append({"id": cid, "split": split, "duration": n / 16000, "n_frames": T})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture
def toy_dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "data", {"a": ("train", 8.0), "b": ("train", 5.0), "c": ("val", 5.0),
                                             "d": ("test", 5.0)})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny-preset checkpoint with random (non-zero) weights, so outputs depend on every input."""
    from ehead_cli.model.checkpoint import save_checkpoint
    from ehead_cli.model.config import preset
    from ehead_cli.model.network import EmbodiedHead
    from ehead_cli.model.stats import MotionStats

    torch.manual_seed(0)
    model = EmbodiedHead(preset("tiny"), MotionStats([0.0] * 115, [0.05] * 115, [0.0, 0.0], [0.02, 0.002]))
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn_like(p) * 0.02)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, {"note": "random weights for tests"})


# --- the listener family: a small dyadic dataset and its tiny runs, trained once per session ----------
LISTENER_TEST_CLIP = "dyad024_en"  # a test-split clip of sample_data/dyadic (11 s)
LISTENER_VAL_CONFIG = """[train_vq]
val_every = 1

[train_lm]
val_every = 1
keep_best = true
"""


def ehead_main(*args: str) -> int:
    """``run_cli`` returning only the exit status, its output echoed to this process's stdout and stderr
    (where ``capsys`` reads it): kept for tests written against this older helper."""
    import sys

    result = run_cli(*args)
    sys.stdout.write(result.out)
    sys.stderr.write(result.err)
    return result.code


@pytest.fixture(scope="session")
def dyadic_subset(tmp_path_factory) -> Path:
    """The committed dyadic sample data through a smaller manifest (every listener once in training, one
    val and one test clip): the same files, less audio to decode."""
    import pandas as pd

    sample = REPO / "sample_data" / "dyadic"
    root = tmp_path_factory.mktemp("dyadic-subset")
    table = pd.read_csv(sample / "manifest.csv")
    train = table[table["split"] == "train"].groupby("identity").head(1)
    subset = pd.concat([train, table[table["split"] == "val"].head(1), table[table["id"] == LISTENER_TEST_CLIP]])
    assert (subset["id"] == LISTENER_TEST_CLIP).sum() == 1 and set(subset["split"]) == {"train", "val", "test"}
    subset.to_csv(root / "manifest.csv", index=False)
    for folder in ("clips", "speaker"):
        (root / folder).symlink_to(sample / folder)
    return root


@pytest.fixture(scope="session")
def listener_runs(tmp_path_factory, dyadic_subset) -> Path:
    """The three listener stages, tiny preset, trained through the command line: vq (2 steps), tokens
    (the codebooks alone) and lm on the tokens run (2 steps), validating every step, lm keeping best/.
    Stage lm must reuse the tokens run's codebooks: fitting any here fails."""
    from ehead_cli.listener import train as listener_train

    root = tmp_path_factory.mktemp("listener-runs")
    cfg = root / "val.toml"
    cfg.write_text(LISTENER_VAL_CONFIG)
    data = str(dyadic_subset)
    common = ("--family", "listener", "--data", data, "--config", str(cfg), "--threads", "1")
    vq = run_cli("train", *common, "--stage", "vq", "--preset", "tiny", "--out", str(root / "vq"))
    assert vq.code == 0, vq.err
    tokens = run_cli("train", *common, "--stage", "tokens", "--vq", str(root / "vq"), "--out", str(root / "tokens"))
    assert tokens.code == 0, tokens.err

    def refit(*_args, **_kw):
        raise AssertionError("stage lm refitted the token codebooks of --vq")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(listener_train, "fit_token_codebooks", refit)
        lm = run_cli("train", *common, "--stage", "lm", "--vq", str(root / "tokens"), "--out", str(root / "lm"))
        assert lm.code == 0, lm.err
    return root


def _models_folder(root: Path) -> Path:
    """A models folder (as ``EHEAD_MODELS`` names) with the shipped presets, model and avatar of the
    checkout linked in, and no listener."""
    root.mkdir(parents=True)
    for name in ("presets", "ehead-small-mel", "avatar-grid-bbaf2n"):
        (root / name).symlink_to(REPO / "models" / name)
    return root


@pytest.fixture(scope="session")
def models_without_listener(tmp_path_factory) -> Path:
    """``EHEAD_MODELS`` for a checkout that ships no listener checkpoint."""
    return _models_folder(tmp_path_factory.mktemp("models-without-listener") / "models")


@pytest.fixture(scope="session")
def models_with_listener(tmp_path_factory, listener_runs) -> Path:
    """``EHEAD_MODELS`` that ships a listener: the ``listener_runs`` stage-lm checkpoint (tiny, trained
    for 2 steps through ``ehead train``) as ``ehead-listener-small``, listed with its checksums in the
    folder's MANIFEST.json like the repository's shipped files."""
    import json
    import shutil

    from ehead_cli.io.atomic import sha256_file
    from ehead_cli.io.manifest import LICENCE, MANIFEST_NAME
    from ehead_cli.listener.generate import DEFAULT_LISTENER

    root = _models_folder(tmp_path_factory.mktemp("models-with-listener") / "models")
    shipped = shutil.copytree(listener_runs / "lm" / "checkpoint", root / DEFAULT_LISTENER)
    manifest = json.loads((REPO / "models" / MANIFEST_NAME).read_text())
    for f in sorted(shipped.iterdir()):
        manifest["files"][f"{DEFAULT_LISTENER}/{f.name}"] = {"size": f.stat().st_size, "sha256": sha256_file(f),
                                                            "licence": LICENCE}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return root

@pytest.fixture(scope="session")
def tiny_avatar(tmp_path_factory):
    """(AVATAR_DIR, FitResult): a tiny avatar fitted for a few steps on a rendered built-in head
    (tests/avatar_fixtures.py), shared by the avatar tests."""
    from avatar_fixtures import TINY, tiny_capture, tiny_fit

    from ehead_cli.avatar.fit import fit_avatar
    from ehead_cli.face import BuiltinHead

    out = tmp_path_factory.mktemp("avatar") / "person"
    return out, fit_avatar(tiny_capture(), BuiltinHead(), out, TINY, tiny_fit(steps=30), progress=False)
