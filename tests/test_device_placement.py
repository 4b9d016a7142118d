"""Device hygiene without a GPU: the networks run on PyTorch's ``meta`` device (shapes, no data)
under a dispatch mode that records every operation mixing tensors of two devices. A tensor made on
the CPU inside a forward pass (``torch.arange(T)`` without ``device=``, a CPU index, a CPU matrix)
is exactly what fails on CUDA with "Expected all tensors to be on the same device"; on the CPU it
goes unnoticed. 0-dim tensors are allowed, as on CUDA."""

from __future__ import annotations

import traceback
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_face_flame import _arrays as flame_arrays
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.face.flame import FlameModel, read_flame_arrays
from ehead_cli.generate.generator import Generator
from ehead_cli.model.config import AudioEncoderConfig, preset
from ehead_cli.model.encoders import HubertEncoder, random_hubert_base
from ehead_cli.model.flow import euler_sample
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.model.stats import MotionStats
from ehead_cli.model.windows import WindowBatch
from ehead_cli.train.stage1 import TrainStep

aten = torch.ops.aten
TRANSFERS = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default, aten._copy_from_and_resize.default}


class DeviceMixing(TorchDispatchMode):
    """Records (operation, devices, where) for every operation whose non-scalar tensor arguments
    live on more than one device (copies between devices excepted). ``strict``: 0-dim tensors count
    too (a CPU scalar inside the sampler would keep CUDA graphs from capturing it)."""

    def __init__(self, strict: bool = False):
        super().__init__()
        self.strict = strict
        self.found: list[tuple[str, set[str], str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {t.device.type for t in tree_leaves((args, kwargs))
                   if isinstance(t, torch.Tensor) and (self.strict or t.dim() > 0)}
        if len(devices) > 1 and func not in TRANSFERS:
            self.found.append((str(func), devices, "".join(traceback.format_stack(limit=8)[:-1])))
        return func(*args, **kwargs)

    def report(self) -> str:
        return "\n".join(f"{op} mixes {sorted(devs)} at\n{where}" for op, devs, where in self.found[:3])


def _stats() -> MotionStats:
    return MotionStats([0.0] * 115, [0.05] * 115, [0.0, 0.0], [0.02, 0.002])


def _meta_batch(model: EmbodiedHead, n: int = 2) -> WindowBatch:
    gen = Generator(model, "cpu", steps=2)
    jobs = [gen.begin(np.zeros(gen.cfg.window * 640, np.float32), np.ones(gen.cfg.window, np.int8), None, i)
            for i in range(n)]
    return gen.window_batch(jobs, 0).to("meta")


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_sampling_and_training_stay_on_the_model_device(name):
    cfg = preset(name)
    if cfg.audio.kind != "mel":  # the paper preset's HuBERT is checked on its own below
        cfg = cfg.replace(audio=AudioEncoderConfig("mel", n_layers=2, dim=64, n_mels=80, conv_kernel=5))
    model = EmbodiedHead(cfg, _stats())
    b = _meta_batch(model)
    model.to("meta")
    with DeviceMixing(strict=True) as mode:  # what Generator.compile captures: not even a CPU scalar
        audio = model.audio_stack(model.encoder.frontend(b.wave))
        cond = model.dit.condition(audio, b.states, b.history, b.history_states, b.shape, b.ref, b.magnitude)
        x = euler_sample(lambda x, t: model.dit.velocity(x, t, cond), b.x0, 4)
    assert not mode.found, mode.report()
    with DeviceMixing() as mode:
        batch = replace(b, x1=x.detach(), t=torch.rand(2, device="meta"), mask=torch.ones(2, cfg.window,
                                                                                           device="meta"))
        TrainStep(model)(batch)["loss"].backward()
    assert x.shape == b.x0.shape
    assert not mode.found, mode.report()


def test_hubert_encoder_stays_on_its_device():
    cfg = AudioEncoderConfig("hubert", n_layers=3, dim=48)
    enc = HubertEncoder(cfg, model=random_hubert_base(2, 48))  # 12 heads of 4
    enc.to("meta")
    with DeviceMixing(strict=True) as mode:
        feats = enc.frontend(torch.zeros(2, 16000, device="meta"))
    assert feats.device.type == "meta"
    assert not mode.found, mode.report()


@pytest.mark.parametrize("kind", ["builtin", "flame"])
def test_face_models_stay_on_their_device(kind, tmp_path):
    if kind == "flame":
        np.savez(tmp_path / "flame.npz", **flame_arrays())
        face = FlameModel(read_flame_arrays(tmp_path / "flame.npz"))
    else:
        face = BuiltinHead()
    face.to("meta")
    motion = torch.zeros(2, 5, 115, device="meta")
    with DeviceMixing() as mode:
        verts = face(torch.zeros(2, 1, 300, device="meta"), motion)
    assert verts.shape[:2] == (2, 5)
    assert not mode.found, mode.report()


def test_the_check_catches_a_tensor_made_on_the_cpu():
    x = torch.ones(4, 3, device="meta")
    with DeviceMixing() as mode:
        x @ torch.ones(3, 2)  # what fails on CUDA
        x * torch.tensor(2.0)  # a 0-dim CPU tensor is allowed on CUDA too
    assert [op for op, _, _ in mode.found] == ["aten.mm.default"]
    with DeviceMixing(strict=True) as mode:
        x * torch.tensor(2.0)
    assert [op for op, _, _ in mode.found] == ["aten.mul.Tensor"]


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_default_dtype_is_bf16_only_where_the_gpu_has_it(monkeypatch, native, expected):
    """A GPU without native bf16 (V100, T4) runs fp32 by default instead of slow emulated bf16."""
    from ehead_cli.devices import autocast_dtype, native_bf16

    asked = {}

    def is_bf16_supported(including_emulation=True):
        asked["emulation"] = including_emulation
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert autocast_dtype(torch.device("cuda")) == expected and asked == {"emulation": False}
    assert native_bf16(torch.device("cpu")) is False and autocast_dtype(torch.device("cpu")) == torch.float32


def test_device_flag_errors_name_the_flag():
    from ehead_cli.devices import resolve_device
    from ehead_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="--device must be cpu or cuda"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda:1 was requested but CUDA is not available"):
            resolve_device("cuda:1")
