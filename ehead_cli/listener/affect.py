"""L2 Affect's estimator for ``ehead eval --emoca``: EMOCA's valence/arousal of motion, from the emotion
recogniser the listener's emotion tokens use (``listener.tokens.EmocaEmotion``)."""

from __future__ import annotations

import os
from collections.abc import Callable


def affect_estimator(emoca: str | os.PathLike | None) -> Callable | None:
    """``EmocaEmotion(emoca).affect`` (motion -> valence, arousal per frame) from ``--emoca``; None without it."""
    if emoca is None:
        return None
    from ehead_cli.listener.tokens import EmocaEmotion

    return EmocaEmotion(emoca).affect
