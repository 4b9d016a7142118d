"""The optional model ``ehead eval`` scores images with, loaded from the paths a user gives: LPIPS-VGG.
None where neither flag is given (the pipeline then reads the environment variables or leaves LPIPS
out, as it says). L2 Affect's EMOCA estimator is the listener's (``listener.affect``): eval takes it as
an argument and does not import the listener, which imports eval."""

from __future__ import annotations

import os


def lpips_model(vgg: str | os.PathLike | None, lpips: str | os.PathLike | None):
    """LPIPS-VGG from ``--vgg`` / ``--lpips`` when either is given (the other from its variable; AssetError
    naming flag and variable when one is missing); None when neither is."""
    if not (vgg or lpips):
        return None
    from ehead_cli.assets import resolve
    from ehead_cli.metrics.image import load_lpips

    return load_lpips(resolve("vgg", vgg), resolve("lpips", lpips))

