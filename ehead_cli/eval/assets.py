"""The optional models ``ehead eval`` scores with, loaded from the paths a user gives: LPIPS-VGG for the
image metrics and EMOCA's emotion recogniser for L2 Affect. None where the flag is not given (the
pipeline then reads the environment variables or leaves the metric out, as it says)."""

from __future__ import annotations

import os
from collections.abc import Callable


def lpips_model(vgg: str | os.PathLike | None, lpips: str | os.PathLike | None):
    """LPIPS-VGG from ``--vgg`` / ``--lpips`` when either is given (the other from its variable; AssetError
    naming flag and variable when one is missing); None when neither is."""
    if not (vgg or lpips):
        return None
    from ehead_cli.assets import resolve
    from ehead_cli.metrics.image import load_lpips

    return load_lpips(resolve("vgg", vgg), resolve("lpips", lpips))


def affect_estimator(emoca: str | os.PathLike | None) -> Callable | None:
    """EMOCA's valence/arousal estimate of motion (``EmocaEmotion.affect``) from ``--emoca``; None without it."""
    if emoca is None:
        return None
    from ehead_cli.listener.tokens import EmocaEmotion

    return EmocaEmotion(emoca).affect
