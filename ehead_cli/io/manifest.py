"""The checksummed manifest of what ships under ``models/``: size, SHA-256 and a licence note per file.

``models/MANIFEST.json`` = {"files": {"<path relative to models/>": {"size", "sha256", "licence"}}}.
``verify_files`` checks the files of a shipped checkpoint before it is loaded, so a damaged download
or a Git LFS pointer left in place of the weights is a one-line error, not a crash deep in a loader.

    python -m ehead_cli.io.manifest [models/]     # rewrite the manifest after changing a shipped file
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_path, sha256_file

MANIFEST_NAME = "MANIFEST.json"
SHIPPED_SUFFIXES = (".safetensors", ".json", ".toml", ".md")
LICENCE = "Apache-2.0 (this project); trained on the project's synthetic sample_data"


def build_manifest(models: Path) -> dict:
    """Entries of every shipped file, except those of a folder with its own MANIFEST.json (an avatar
    folder: it is checked against its own manifest, with its own licence notes)."""
    files = {}
    own = {m.parent for m in models.rglob(MANIFEST_NAME) if m.parent != models}
    for p in sorted(models.rglob("*")):
        if own.intersection(p.parents):
            continue
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".") and p.suffix in SHIPPED_SUFFIXES:
            files[p.relative_to(models).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p),
                                                      "licence": LICENCE}
    return {"files": files}


def write_manifest(models: Path) -> Path:
    text = json.dumps(build_manifest(models), indent=2) + "\n"
    with atomic_path(models / MANIFEST_NAME) as tmp:
        tmp.write_text(text)
    return models / MANIFEST_NAME


def verify_files(models: Path, folder: Path) -> None:
    """Check every manifest entry under ``folder`` (a checkpoint inside ``models``); InputError names
    the first file whose size or SHA-256 differs."""
    path = models / MANIFEST_NAME
    if not path.is_file():
        return
    entries = json.loads(path.read_text())["files"]
    prefix = folder.resolve().relative_to(models.resolve()).as_posix() + "/"
    for rel, entry in entries.items():
        if not rel.startswith(prefix):
            continue
        f = models / rel
        if not f.is_file():
            raise InputError(f"{f}: missing (listed in {path})")
        if f.stat().st_size != entry["size"] or sha256_file(f) != entry["sha256"]:
            raise InputError(f"{f}: size or SHA-256 differs from {path} (a damaged copy, or a Git LFS pointer "
                             f"instead of the file?)")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "models"
    print(write_manifest(target))
