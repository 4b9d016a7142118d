"""The options several commands share, each defined once here: its flag, type, help and check.

A command annotates a parameter with one of these (``device: Device = None``); the default stays at
the command. Where an option means the same thing everywhere its help is fixed (``Device``, ``Threads``,
``Emoca``); where it is the same input put to a different use by each command (``--flame``: track,
render, evaluate, export...), a function builds it from that use, so the flag, type, variable and check
are still written once. Checks are ``ehead_cli.checks``: a bad value is one line naming the flag.
Asset options name their environment variable in help but are not read from it here: the library does
that (``assets.resolve``), so a set variable never counts as a flag given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli import checks
from ehead_cli.assets import ASSETS


def _env(key: str) -> str:
    return ASSETS[key].env


# --- where and how fast -------------------------------------------------------------------------------
Device = Annotated[str | None, typer.Option(
    metavar="cpu|cuda|cuda:N", help="Device to run on: cpu, cuda or cuda:N (default: cuda when available).",
    callback=lambda v: checks.device(v))]
Threads = Annotated[int | None, typer.Option(
    help="CPU threads for torch (default: EHEAD_THREADS, else one per core the load average says is idle).",
    callback=lambda v: checks.positive(v, "--threads"))]

# --- sampling and video -------------------------------------------------------------------------------
Steps = Annotated[int, typer.Option(help=f"Euler sampling steps, 1-{checks.MAX_STEPS}.",
                                    callback=lambda v: checks.steps(v))]
Size = Annotated[int, typer.Option(help="Video frame size in pixels (square, even, >= 16).",
                                   callback=lambda v: checks.size(v))]

# --- the model --------------------------------------------------------------------------------------------
FAMILIES = ("embodiedhead", "listener")
Family = Annotated[str | None, typer.Option(
    metavar="embodiedhead|listener", help="Model family: embodiedhead (default; the Rectified-Flow DiT) or listener "
    "(the multimodal LM listener: VQ-VAE + GPT-2, README 'The listener family').",
    callback=lambda v: checks.one_of(v, FAMILIES, "--family"))]


def checkpoint(help: str):
    """``--checkpoint``: a checkpoint folder or a run folder (its checkpoint/), for what ``help`` says."""
    return Annotated[Path | None, typer.Option(metavar="DIR", help=help)]


# --- the assets a user brings (README 'Assets you bring'; ehead info lists them) ----------------------------
AudioEncoder = Annotated[str | None, typer.Option(
    "--audio-encoder", metavar="PATH",
    help=f"mHuBERT-147 folder (or {_env('hubert')}) for models with a HuBERT encoder (the "
    "paper preset).")]
SpeechTokenizer = Annotated[str | None, typer.Option(
    "--speech-tokenizer", metavar="PATH",
    help="Listener: SpeechTokenizer folder (config.json + SpeechTokenizer.pt) for presets "
    f"with SpeechTokenizer speech tokens (or {_env('speechtokenizer')}).")]
Emoca = Annotated[str | None, typer.Option(
    metavar="PATH",
    help="EMOCA emotion recogniser folder (cfg.yaml + checkpoints/*.ckpt): the listener's emotion tokens for "
    f"presets that use it, and L2 Affect in ehead eval (or {_env('emoca')}).")]
FlameLandmarks = Annotated[str | None, typer.Option(
    metavar="PATH",
    help=f"FLAME's 68-point landmark embedding, DECA's landmark_embedding.npy (or {_env('flame_landmarks')}).")]


def flame(use: str):
    """``--flame``: the FLAME head model (a folder or the .pkl), put to ``use`` by this command."""
    return Annotated[str | None, typer.Option(
        metavar="PATH", help=f"FLAME head model, a folder or generic_model.pkl (or {_env('flame')}): {use}.")]


def vgg(use: str):
    """``--vgg``: VGG16 backbone weights, put to ``use`` by this command."""
    return Annotated[str | None, typer.Option(
        metavar="PATH", help=f"VGG16 weights, torchvision layout (or {_env('vgg')}): {use}.")]


def lpips(use: str):
    """``--lpips``: the LPIPS v0.1 linear layers, put to ``use`` by this command."""
    return Annotated[str | None, typer.Option(
        metavar="PATH", help=f"LPIPS v0.1 linear layers, the lpips package's vgg.pth (or {_env('lpips')}): {use}.")]


# --- --avatar: one flag, a meaning per command, one alias each --------------------------------------------------
AnimatedAvatar = Annotated[Path | None, typer.Option(
    "--avatar", metavar="AVATAR_DIR|SHAPE|NPZ",
    help="Who is animated: an avatar folder (ehead avatar fit: renders that person, at its own size), a shape "
    "file (.npy/.npz) or a motion NPZ whose shape and first frame become the reference.")]
ServedAvatar = Annotated[Path | None, typer.Option(
    "--avatar", metavar="AVATAR_DIR|SHAPE|NPZ",
    help="Who every conversation animates: an avatar folder (ehead avatar fit: the frames show that person), a "
    "shape file (.npy/.npz) or a motion NPZ whose shape and first frame become the reference.")]
RenderingAvatar = Annotated[Path | None, typer.Option(
    "--avatar", metavar="AVATAR_DIR",
    help="Avatar folder (ehead avatar fit): render that person (its identity, at its own size).")]
TimedAvatar = Annotated[Path | None, typer.Option(
    "--avatar", metavar="AVATAR_DIR",
    help="Avatar folder (ehead avatar fit): time its renderer and the whole job rendered by it (with --stage2: "
    "train it).")]
Stage2Renderers = Annotated[list[str] | None, typer.Option(
    "--avatar", metavar="AVATAR_DIR|builtin",
    help="--stage 2: the renderer trained with the DiT: an avatar folder (ehead avatar fit; repeat for several "
    "people, each rendering the clips of its video) or builtin (the mesh renderer).")]
