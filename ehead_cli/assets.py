"""Third-party assets that cannot ship with ehead, and where each is looked for.

Every asset loads from a local path given by a command-line flag or an environment variable;
nothing is downloaded. ``resolve`` turns (flag value, environment) into a path or a one-line
``AssetError`` naming both the flag and the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ehead_cli.errors import AssetError


@dataclass(frozen=True)
class Asset:
    """``flag`` is accepted by each of ``commands`` (a test holds the CLI to this list)."""

    key: str
    what: str
    flag: str
    env: str
    licence: str
    used_for: str
    commands: tuple[str, ...]

    def configured(self) -> str | None:
        return os.environ.get(self.env) or None


ASSETS: dict[str, Asset] = {a.key: a for a in [
    Asset("flame", "FLAME 2020/2023 head model (generic_model.pkl / flame2023.pkl, or a folder)", "--flame",
          "EHEAD_FLAME", "FLAME licence: register and download at flame.is.tue.mpg.de; not redistributable",
          "face model for rendering, metrics and tracking", ("generate", "render", "eval", "prepare", "export",
                                                               "train")),
    Asset("flame_landmarks", "FLAME 68-point landmark embedding (DECA landmark_embedding.npy)", "--flame-landmarks",
          "EHEAD_FLAME_LANDMARKS", "ships with DECA/EMOCA assets under the FLAME licence",
          "MOD metric and landmark tracking on FLAME", ("eval", "prepare")),
    Asset("flame_masks", "FLAME vertex masks (FLAME_masks.pkl)", "--flame-masks", "EHEAD_FLAME_MASKS",
          "FLAME licence (download page of FLAME)", "LVE / FDD regions on FLAME", ("eval",)),
    Asset("hubert", "mHuBERT-147 (or any HuBERT-base model) as a transformers folder", "--audio-encoder",
          "EHEAD_HUBERT", "CC BY-NC-SA 4.0 (utter-project/mHuBERT-147); download it yourself",
          "the paper preset's frozen audio encoder", ("train", "generate")),
    Asset("talknet", "TalkNet-ASD checkpoint pretrain_TalkSet.model", "--talknet", "EHEAD_TALKNET",
          "MIT code; weights from the TalkNet-ASD release", "listening/speaking labels in `ehead prepare`",
          ("prepare",)),
    Asset("vgg", "VGG16 backbone weights (torchvision layout state dict)", "--vgg", "EHEAD_VGG",
          "BSD (torchvision) / CC BY 4.0 (VGG)", "LPIPS metric; Stage II's perceptual loss", ("eval", "train")),
    Asset("lpips", "LPIPS v0.1 linear layers for VGG (vgg.pth of the lpips package)", "--lpips", "EHEAD_LPIPS",
          "BSD-2 (richzhang/PerceptualSimilarity)", "LPIPS metric", ("eval",)),
    Asset("speechtokenizer", "SpeechTokenizer folder (config.json + SpeechTokenizer.pt)", "--speech-tokenizer",
          "EHEAD_SPEECHTOKENIZER", "Apache-2.0 (ZhangXInFD/SpeechTokenizer); download it yourself",
          "the listener's speech tokens (paper preset)", ("train", "generate")),
    Asset("emoca", "EMOCA emotion recogniser folder (cfg.yaml + checkpoints/*.ckpt)", "--emoca", "EHEAD_EMOCA",
          "EMOCA licence (non-commercial, emoca.is.tue.mpg.de); not redistributable",
          "the listener's speaker emotion tokens (paper preset) and L2 Affect", ("train", "generate", "eval")),
    Asset("gpt2", "a pretrained GPT-2 as a transformers folder (e.g. gpt2-medium)", "--lm", "EHEAD_GPT2",
          "MIT (openai/gpt-2); download it yourself", "initialising the listener's language model", ("train",)),
]}


def resolve(key: str, value: str | os.PathLike | None = None) -> Path:
    """The asset's path from the flag value, else its environment variable; AssetError if neither."""
    a = ASSETS[key]
    raw = value if value not in (None, "") else a.configured()
    if raw is None:
        raise AssetError(f"{a.what} is needed: pass {a.flag} PATH or set {a.env} ({a.licence})")
    path = Path(raw).expanduser()
    if not path.exists():
        source = a.flag if value not in (None, "") else a.env
        raise AssetError(f"{path}: not found (from {source}); {a.what}")
    return path
