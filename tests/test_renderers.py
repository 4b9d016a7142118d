"""The renderer interface and its one registry (``render.base``, ``avatar.kinds``, ``avatar.renderers``):
each source gives the right renderer at the right size, bad sources are one line naming the path, and
``ehead serve --avatar AVATAR_DIR`` streams JPEG frames drawn by the fitted avatar, not the built-in head."""

from __future__ import annotations

import json
import shutil
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from avatar_fixtures import TINY, talking_motion
from serving import connect, running_server, send_audio

from ehead_cli.avatar.folder import CONFIG, MANIFEST, load_avatar
from ehead_cli.avatar.kinds import KINDS, build_renderer, kind_of, kind_of_section
from ehead_cli.avatar.mesh import MeshAvatar
from ehead_cli.avatar.neural import NeuralAvatar
from ehead_cli.avatar.renderers import (
    SOURCES,
    RendererSource,
    builtin_camera,
    builtin_renderer,
    job_renderer,
    motion_renderer,
    register_source,
    renderer_from,
    source_of,
    trainable_renderer,
)
from ehead_cli.errors import ConfigError, InputError
from ehead_cli.face import BuiltinHead
from ehead_cli.io.atomic import sha256_file
from ehead_cli.render.base import FrameRenderer
from ehead_cli.render.renderer import Renderer
from ehead_cli.serve import protocol
from ehead_cli.serve.session import ServeConfig


def stage2_checkpoint(tmp_path, tiny_checkpoint, avatar_dir, renderers: bool = True):
    """A checkpoint folder whose config.json records a refined renderer (as ``ehead train --stage 2``
    writes it): the model's config with ``meta.renderers`` and the avatar under ``avatars/``."""
    ckpt = tmp_path / "stage2"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    if renderers:
        shutil.copytree(avatar_dir, ckpt / "avatars" / "person")
        config.setdefault("meta", {})["renderers"] = [{
            "name": "person", "kind": "neural", "folder": "avatars/person", "source": str(avatar_dir),
            "manifest_sha256": sha256_file(ckpt / "avatars" / "person" / MANIFEST)}]
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt


# --- the registry -----------------------------------------------------------------------------------------
def test_each_source_gives_its_renderer_at_its_size(tmp_path, tiny_checkpoint, tiny_avatar):
    avatar_dir, _ = tiny_avatar
    builtin = renderer_from("builtin", size=48)
    assert type(builtin) is Renderer and builtin.size == 48 and builtin.needs == "builtin"
    folder = renderer_from(avatar_dir, size=48)  # an avatar draws at its own size
    assert type(folder) is NeuralAvatar and folder.size == TINY.size and folder is load_avatar(avatar_dir).renderer
    refined = renderer_from(stage2_checkpoint(tmp_path, tiny_checkpoint, avatar_dir))
    assert type(refined) is NeuralAvatar and refined.size == TINY.size and refined is not folder
    assert [source_of(v).name for v in ("builtin", avatar_dir, tmp_path / "stage2")] == ["builtin", "avatar",
                                                                                         "checkpoint"]
    for r in (builtin, folder, refined):
        assert isinstance(r, FrameRenderer)
        frames = r.render(torch.zeros(300), talking_motion(3))
        assert frames.shape == (3, r.size, r.size, 3) and frames.dtype == torch.uint8
        assert [f.shape for f in r.iter_frames(torch.zeros(300), talking_motion(2))] == [(r.size, r.size, 3)] * 2


def test_a_new_source_is_one_registration_tried_before_the_folder_fallback(monkeypatch):
    """The seam a new renderer comes in by: a source registered after the built-in ones is found
    (not swallowed by the avatar-folder fallback) and every command's renderer_from gives it."""
    monkeypatch.setattr("ehead_cli.avatar.renderers.SOURCES", list(SOURCES))
    tiny = RendererSource("tiny-mesh", lambda v: v.startswith("tiny:"),
                          lambda v, size, device, flame: builtin_renderer(int(v.split(":")[1]), flame, device),
                          "the built-in head at the size after tiny:")
    register_source(tiny)
    assert source_of("tiny:32") is tiny and source_of("some/folder").name == "avatar"
    assert renderer_from("tiny:32").size == 32
    with pytest.raises(ValueError, match="'tiny-mesh' is registered already"):
        register_source(tiny)


def test_a_bad_source_is_one_line_naming_the_path(tmp_path, tiny_checkpoint, tiny_avatar):
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = stage2_checkpoint(tmp_path, tiny_checkpoint, tiny_avatar[0], renderers=False)
    for bad, says in ((empty, "not an avatar folder"), (tmp_path / "missing", "avatar folder not found"),
                      (plain, "a checkpoint without a refined renderer")):
        with pytest.raises(InputError) as err:
            renderer_from(bad)
        msg = str(err.value)
        assert str(bad) in msg and says in msg and "\n" not in msg


def test_a_folder_of_an_unknown_kind_is_an_input_error(tmp_path, tiny_avatar):
    with pytest.raises(ConfigError, match="unknown renderer kind 'paint' .known: mesh, neural"):
        kind_of_section({"kind": "paint", "size": 32}, "x")
    assert kind_of_section({"kind": "mesh", "size": 32}, "x")[0] is KINDS["mesh"]
    assert kind_of_section(TINY.to_dict(), "x") == (KINDS["neural"], TINY)  # the folders without "kind"
    bad = tmp_path / "paint"
    shutil.copytree(tiny_avatar[0], bad)
    config = json.loads((bad / CONFIG).read_text())
    config["renderer"]["kind"] = "paint"
    (bad / CONFIG).write_text(json.dumps(config))
    entries = json.loads((bad / MANIFEST).read_text())
    entries["files"][CONFIG].update(size=(bad / CONFIG).stat().st_size, sha256=sha256_file(bad / CONFIG))
    (bad / MANIFEST).write_text(json.dumps(entries))
    with pytest.raises(InputError, match=r"config.json: invalid renderer or camera section .unknown renderer kind"):
        renderer_from(bad)


def test_the_trainable_kinds_of_stage_two(tiny_avatar):
    face = BuiltinHead()
    camera = builtin_camera(face, 40)
    mesh, loaded = trainable_renderer("builtin", face, camera)
    assert type(mesh) is MeshAvatar and loaded is None and mesh.size == 40 and kind_of(mesh) == "mesh"
    assert type(build_renderer("mesh", face, camera)) is MeshAvatar
    with pytest.raises(ConfigError, match="needs its fitted config"):
        build_renderer("neural", face, camera)
    # at the start, the mesh kind draws what the built-in renderer draws
    motion = talking_motion(2)
    np.testing.assert_array_equal(mesh.render(torch.zeros(300), motion).numpy(),
                                  builtin_renderer(40).render(torch.zeros(300), motion).numpy())
    neural, loaded = trainable_renderer(tiny_avatar[0], face, camera)
    assert type(neural) is NeuralAvatar and neural.training and kind_of(neural) == "neural"
    assert neural is not loaded.renderer and not loaded.renderer.training  # the shared folder stays as it was


def test_the_commands_renderers(tmp_path, tiny_avatar):
    from avatar_fixtures import video_camera

    from ehead_cli.avatar.identity import Avatar

    person = Avatar.load(tiny_avatar[0])
    assert job_renderer(person, size=64) is person.renderer
    plain = job_renderer(None, size=64)
    assert type(plain) is Renderer and plain.size == 64
    clip = Avatar(camera=video_camera())
    framed, unframed = job_renderer(clip, size=64), job_renderer(clip, size=64, frame_clip=False)
    assert framed.mesh.camera != unframed.mesh.camera == plain.mesh.camera
    shape = np.full(300, 0.1, np.float32)
    renderer, drawn = motion_renderer(shape, video_camera(), tiny_avatar[0], size=64)
    assert renderer is person.renderer and np.array_equal(drawn, person.shape)
    renderer, drawn = motion_renderer(shape, video_camera(), None, size=64)
    assert renderer.mesh.camera == framed.mesh.camera and drawn is shape
    np.save(tmp_path / "shape.npy", shape)  # an identity alone has no renderer: ehead render refuses it
    with pytest.raises(InputError, match="shape.npy: not an avatar folder"):
        motion_renderer(shape, None, tmp_path / "shape.npy")


def test_the_mesh_renderer_through_another_camera_draws_what_a_framed_one_does():
    from avatar_fixtures import video_camera

    from ehead_cli.avatar.renderers import framed

    r = builtin_renderer(40)
    view = framed(r, video_camera())
    motion = talking_motion(2)
    torch.testing.assert_close(r.images(torch.zeros(300), motion, camera=view.mesh.camera).image,
                               view.images(torch.zeros(300), motion).image)


# --- ehead serve --avatar ---------------------------------------------------------------------------------
def decode(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(BytesIO(jpeg)).convert("RGB")).astype(np.float32)


def test_serve_streams_jpeg_frames_of_the_fitted_avatar(tiny_checkpoint, tiny_avatar):
    from ehead_cli.avatar.identity import Avatar
    from ehead_cli.generate.generator import Generator
    from ehead_cli.model.checkpoint import load_checkpoint

    gen = Generator(load_checkpoint(tiny_checkpoint), "cpu", steps=2)
    person = Avatar.load(tiny_avatar[0])
    rng = np.random.default_rng(5)
    with running_server(gen, config=ServeConfig(jpeg_size=64), avatar=person) as (addr, _srv):
        ws, _ = connect(addr, frames=True)
        send_audio(ws, "mic", (0.1 * rng.standard_normal(4 * 16000)).astype(np.float32), chunk=16000)
        motion, jpegs = {}, {}
        while len(jpegs) < 100 or len(motion) < 100:
            msg = ws.recv(timeout=60)
            if isinstance(msg, bytes) and msg[:4] == protocol.JPEG_MAGIC:
                frame, data = protocol.decode_jpeg(msg)
                jpegs[frame] = decode(data)
            elif isinstance(msg, bytes) and msg[:4] == protocol.MOTION_MAGIC:
                for rec in protocol.decode_motion(msg)[1]:
                    motion[int(rec["frame"])] = rec["motion"].copy()
        ws.close()
    frames = [0, 37, 99]
    m = np.stack([motion[f] for f in frames])
    got = np.stack([jpegs[f] for f in frames])
    assert got.shape == (3, TINY.size, TINY.size, 3)  # the avatar's own size, not jpeg_size
    own = person.renderer.render(person.shape, m).numpy().astype(np.float32)
    head = builtin_renderer(TINY.size).render(person.shape, m).numpy().astype(np.float32)
    err_own, err_head = np.abs(got - own).mean(), np.abs(got - head).mean()
    assert err_own < 6.0 and err_head > 5 * err_own, (err_own, err_head)  # JPEG noise vs another picture


def test_a_stage_two_checkpoint_without_avatar_animates_its_refined_renderer(tmp_path, monkeypatch, capsys,
                                                                               tiny_checkpoint, tiny_avatar):
    """ehead serve and ehead generate with a Stage-II checkpoint and no --avatar draw its refined
    renderer (the checkpoint's avatars/ folder); a given --avatar wins; Stage I animates the built-in head."""
    from ehead_cli.avatar.identity import Avatar
    from ehead_cli.avatar.renderers import avatar_or_refined
    from tests.conftest import ehead_main

    avatar_dir, _ = tiny_avatar
    ckpt = stage2_checkpoint(tmp_path, tiny_checkpoint, avatar_dir)
    assert avatar_or_refined(None, ckpt) == ckpt / "avatars" / "person"
    assert avatar_or_refined(avatar_dir, ckpt) == avatar_dir and avatar_or_refined(None, tiny_checkpoint) is None
    asked = {}

    def load(path, device="cpu", flame=None):
        asked["path"] = Path(path)
        raise InputError("stop before serving")

    monkeypatch.setattr(Avatar, "load", staticmethod(load))
    assert ehead_main("serve", "--checkpoint", str(ckpt), "--threads", "1") == 2
    assert asked["path"] == ckpt / "avatars" / "person"
    assert "serving the checkpoint's Stage-II renderer" in capsys.readouterr().err
