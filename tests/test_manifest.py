"""The checksummed manifest of models/: written, verified, and a damaged file named."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from ehead_cli.errors import InputError
from ehead_cli.io.manifest import MANIFEST_NAME, build_manifest, verify_files, write_manifest


def test_manifest_round_trip_and_tampering(tmp_path):
    ck = tmp_path / "demo"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"\x00" * 100)
    write_manifest(tmp_path)
    entries = json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]
    assert set(entries) == {"demo/config.json", "demo/model.safetensors"}
    assert entries["demo/model.safetensors"]["size"] == 100
    verify_files(tmp_path, ck)
    (ck / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(InputError, match="model.safetensors: size or SHA-256 differs"):
        verify_files(tmp_path, ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(InputError, match="missing"):
        verify_files(tmp_path, ck)


def test_shipped_manifest_matches_the_files():
    models = REPO / "models"
    assert (models / MANIFEST_NAME).is_file(), f"the committed {MANIFEST_NAME} is missing from {models}"
    shipped = json.loads((models / MANIFEST_NAME).read_text())["files"]
    assert shipped == {k: v for k, v in build_manifest(models)["files"].items() if k in shipped}
    assert set(shipped) == set(build_manifest(models)["files"]), "rewrite it: python -m ehead_cli.io.manifest"
