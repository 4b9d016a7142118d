"""Model families behind one interface: the registry, family_of, the one checkpoint-folder reader's
run-folder rule, the one config merge and the one job runner."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from ehead_cli.errors import ConfigError, EheadError, InputError
from ehead_cli.family import EMBODIEDHEAD, LISTENER, family_names, family_of, get_family
from ehead_cli.generate.runner import mark_duplicate_outputs, run_batch
from ehead_cli.io.checkpoint import RUN_BEST, RUN_CHECKPOINT, resolve_folder
from ehead_cli.io.config import Layer, file_layer, merge_config


@pytest.fixture(scope="module")
def listener_checkpoint(tmp_path_factory) -> Path:
    """A tiny-preset listener checkpoint (the VQ-VAE alone, random weights), saved as training does."""
    from ehead_cli.listener.checkpoint import ListenerModel, save_listener
    from ehead_cli.listener.config import load_preset
    from ehead_cli.listener.data import MotionNorm
    from ehead_cli.listener.vqvae import VQVAE

    torch.manual_seed(0)
    cfg = load_preset("tiny")
    model = ListenerModel(cfg, MotionNorm(np.zeros(115, np.float32), np.ones(115, np.float32)),
                          {"a": np.zeros(230, np.float32)}, VQVAE(cfg.vq))
    return save_listener(tmp_path_factory.mktemp("listener") / "vq", model, meta={"stage": "vq"})


def test_both_families_are_registered_with_their_stages_and_formats():
    assert family_names() == ("embodiedhead", "listener")
    # the --family choices (kept in cli.options so --help stays light) are the registry's names
    from ehead_cli.cli.options import FAMILIES
    assert FAMILIES == family_names()
    assert get_family() is EMBODIEDHEAD and get_family("listener") is LISTENER
    assert EMBODIEDHEAD.stage_names() == ("1", "2") and LISTENER.stage_names() == ("vq", "tokens", "lm")
    assert EMBODIEDHEAD.format_name == "ehead-checkpoint" and LISTENER.format_name == "ehead-listener-checkpoint"
    assert LISTENER.stage("lm").call == "ehead_cli.listener.train.train_lm"
    with pytest.raises(ConfigError, match="--stage 3: the embodiedhead family trains --stage 1, 2"):
        EMBODIEDHEAD.stage("3")
    with pytest.raises(ConfigError, match="--family speaker: choose one of embodiedhead, listener"):
        get_family("speaker")


def test_family_of_tells_the_checkpoints_apart(tiny_checkpoint, listener_checkpoint, tmp_path):
    assert family_of(tiny_checkpoint) is EMBODIEDHEAD
    assert family_of(listener_checkpoint) is LISTENER
    run = tmp_path / "run"
    (run / RUN_CHECKPOINT).mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (run / RUN_CHECKPOINT / name).write_bytes((listener_checkpoint / name).read_bytes())
    assert family_of(run) is LISTENER  # a run folder too
    loaded = LISTENER.load(run)
    assert loaded.lm is None and loaded.meta["stage"] == "vq"
    assert EMBODIEDHEAD.load(tiny_checkpoint).cfg.preset == "tiny"
    with pytest.raises(InputError, match="not a checkpoint folder"):
        family_of(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "ehead-speaker", "version": 1}))
    with pytest.raises(InputError, match="format 'ehead-speaker' belongs to no model family"):
        family_of(tmp_path)
    with pytest.raises(InputError, match="a listener checkpoint; add --family listener"):
        EMBODIEDHEAD.load(listener_checkpoint)
    with pytest.raises(InputError, match="an EmbodiedHead checkpoint goes without --family listener"):
        LISTENER.load(tiny_checkpoint)


def _checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"format": "x", "version": 1, "meta": {"step": step}}))
    return folder


@pytest.mark.parametrize("best", [False, True])
def test_the_one_run_folder_rule(tmp_path, best):
    run = tmp_path / "run"
    _checkpoint(run / RUN_CHECKPOINT, 10)
    if best:
        _checkpoint(run / RUN_BEST, 4)
    assert resolve_folder(run) == run / RUN_CHECKPOINT  # EmbodiedHead: the last step
    assert resolve_folder(run, prefer_best=True) == run / (RUN_BEST if best else RUN_CHECKPOINT)
    assert EMBODIEDHEAD.checkpoint_folder(run) == run / RUN_CHECKPOINT
    assert LISTENER.checkpoint_folder(run) == run / (RUN_BEST if best else RUN_CHECKPOINT)
    for sub in (RUN_CHECKPOINT, RUN_BEST):  # a checkpoint folder is itself, whatever the preference
        if (run / sub).is_dir():
            assert resolve_folder(run / sub, prefer_best=True) == run / sub
    assert resolve_folder(tmp_path / "empty") == tmp_path / "empty"


def test_the_config_merge_names_the_file_and_section_of_an_unknown_key(tmp_path):
    from ehead_cli.model.config import AudioEncoderConfig, ModelConfig
    from ehead_cli.train.config import TrainConfig, resolve_config

    schema = {"model": ModelConfig, "model.audio": AudioEncoderConfig, "train": TrainConfig}
    base = Layer({"train": {"steps": 5, "lr": 1e-3}, "model": {"audio": {"dim": 8}}}, "preset.toml")
    extra = tmp_path / "extra.toml"
    extra.write_text("[train]\nlr = 2e-3\n\n[model.audio]\nn_layers = 2\n")
    merged, source = merge_config([base, *file_layer(extra)], schema)
    assert merged == {"train": {"steps": 5, "lr": 2e-3}, "model": {"audio": {"dim": 8, "n_layers": 2}}}
    assert source == str(extra)
    extra.write_text("[train]\nlr = 2e-3\nsteps_per_epoch = 3\n")
    with pytest.raises(ConfigError, match=rf"{extra}: unknown train field\(s\) steps_per_epoch"):
        merge_config([base, *file_layer(extra)], schema)
    extra.write_text("[model.audio]\nwidth = 3\n")
    with pytest.raises(ConfigError, match=rf"{extra}: unknown model.audio field\(s\) width"):
        resolve_config("tiny", extra, {})
    extra.write_text("[trian]\nlr = 1.0\n")
    with pytest.raises(ConfigError, match=rf"{extra}: unknown section\(s\) trian; use \[model\]"):
        resolve_config("tiny", extra, {})
    extra.write_text("[lm]\nn_layer = 2\nwidth = 8\n")
    from ehead_cli.listener.config import load_preset

    with pytest.raises(ConfigError, match=rf"{extra}: unknown lm field\(s\) width"):
        load_preset("tiny", extra)
    from ehead_cli.train.config import TrainConfig

    stage2 = {"stage2": TrainConfig, "stage2.refine": RefineSchema}
    extra.write_text("[stage2]\nsteps = 4\n\n[stage2.refine]\nl1_weight = 0.5\n")
    merged, _ = merge_config([Layer({"stage2": {"lr": 1e-4, "refine": {"l1_weight": 0.2}}}, "p.toml"),
                              *file_layer(extra)], stage2, context=" for --stage 2")
    assert merged == {"stage2": {"lr": 1e-4, "steps": 4, "refine": {"l1_weight": 0.5}}}
    extra.write_text("[stage2.refine]\nl2_weight = 0.5\n")
    with pytest.raises(ConfigError, match=rf"{extra}: unknown stage2.refine field\(s\) l2_weight"):
        merge_config([*file_layer(extra)], stage2)
    extra.write_text("[model]\ndepth = 2\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) model for --stage 2; use \[stage2\] and"):
        merge_config([*file_layer(extra)], stage2, context=" for --stage 2")
    extra.write_text('[train]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match=rf"{extra}: \[train\] steps must be int, got 'many'"):
        resolve_config("tiny", extra, {})


@dataclass(frozen=True)
class RefineSchema:
    l1_weight: float = 0.2


@dataclass
class _Job:
    name: str
    frames: int
    out: Path | None = None
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        return self.frames


def test_the_runner_records_a_failing_job_and_finishes_the_others(tmp_path):
    jobs = [_Job("a", 10, tmp_path / "a"), _Job("bad", 20, tmp_path / "bad"), _Job("c", 30, tmp_path / "c"),
            _Job("skipped", 5, tmp_path / "s", error="unreadable audio"), _Job("dup", 5, tmp_path / "a")]
    mark_duplicate_outputs(jobs, "give each job its own out")
    assert jobs[4].error.endswith("is also written by job a; give each job its own out")
    batches = []

    def generate(batch, advance):
        batches.append([j.name for j in batch])
        advance(len(batch))
        return [j.frames * 2 for j in batch]

    def write(job, result):
        if job.name == "bad":
            raise InputError(f"{job.out}.npz: disk full")
        path = job.out.with_suffix(".txt")
        path.write_text(str(result))
        job.outputs.append(path)

    assert run_batch(jobs, generate, write, description="test", total=3) is jobs
    assert batches == [["a", "bad", "c"]]  # one batch, the failed jobs left out
    assert [j.error for j in jobs[:3]] == [None, f"{tmp_path / 'bad'}.npz: disk full", None]
    assert (tmp_path / "a.txt").read_text() == "20" and (tmp_path / "c.txt").read_text() == "60"
    assert jobs[1].outputs == [] and jobs[3].error == "unreadable audio" and jobs[3].seconds == 0.0
    assert all(j.seconds > 0 for j in jobs[:3])
    with pytest.raises(EheadError):  # a failing batch generation is the command's error, not a job's
        run_batch([_Job("x", 1, tmp_path / "x")], lambda b, a: (_ for _ in ()).throw(InputError("no model")),
                  write, description="test")
