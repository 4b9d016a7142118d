"""The listener family: an identity-disentangled VQ-VAE and a GPT-2 language model
(``ehead_cli.listener``), trained in three stages on a dyadic dataset, generating a listener's motion
from a speaker's audio and motion. Its checkpoint folder: ``ehead_cli.listener.checkpoint`` (a run
folder's ``best/`` before its ``checkpoint/``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ehead_cli.family.base import ModelFamily, Stage
from ehead_cli.listener.checkpoint import LISTENER_FORMAT
from ehead_cli.listener.generate import ListenerJob


def train_vq(*args: Any, **kwargs: Any) -> Any:
    """``ehead_cli.listener.train.train_vq``: the VQ-VAE on the listeners' motion."""
    from ehead_cli.listener.train import train_vq as call

    return call(*args, **kwargs)


def fit_tokens(*args: Any, **kwargs: Any) -> Any:
    """``ehead_cli.listener.train.fit_tokens``: the speaker's speech and emotion token codebooks."""
    from ehead_cli.listener.train import fit_tokens as call

    return call(*args, **kwargs)


def train_lm(*args: Any, **kwargs: Any) -> Any:
    """``ehead_cli.listener.train.train_lm``: the language model on the tokenised dyads."""
    from ehead_cli.listener.train import train_lm as call

    return call(*args, **kwargs)


def vq_metrics(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str = "test",
               device: str = "cpu") -> dict[str, float]:
    """``ehead_cli.listener.generate.vq_metrics`` of a checkpoint's VQ-VAE (Rec., Commit., PPL)."""
    from ehead_cli.listener.checkpoint import load_listener
    from ehead_cli.listener.generate import vq_metrics as call

    return call(load_listener(checkpoint, device=device), data, split)


class ListenerFamily(ModelFamily):
    name = "listener"
    summary = "the multimodal LM listener: VQ-VAE + GPT-2, a listener's motion from a speaker's audio and motion"
    checkpoint_format = LISTENER_FORMAT
    stages = (Stage("vq", "the VQ-VAE on the listeners' motion", "ehead_cli.listener.train.train_vq", train_vq),
              Stage("tokens", "the speech and emotion token codebooks", "ehead_cli.listener.train.fit_tokens",
                    fit_tokens),
              Stage("lm", "the GPT-2 language model on the tokenised dyads", "ehead_cli.listener.train.train_lm",
                    train_lm))
    default_stage = None
    job_type = ListenerJob
    checkpoint_metrics = staticmethod(vq_metrics)

    def load(self, checkpoint: str | os.PathLike, device: str = "cpu") -> Any:
        from ehead_cli.listener.checkpoint import load_listener

        return load_listener(checkpoint, device=device)

    def generator(self, checkpoint: str | os.PathLike | None, device: str | None = None, **options: Any) -> Any:
        """``ListenerGenerator.from_checkpoint`` (options: speech_tokenizer, emoca)."""
        from ehead_cli.listener.generate import ListenerGenerator

        return ListenerGenerator.from_checkpoint(checkpoint, device=device, **options)

    def run_jobs(self, generator: Any, jobs: list[ListenerJob], **options: Any) -> list[ListenerJob]:
        """``ehead_cli.listener.generate.run_listener_jobs`` (options: temperature, top_k, seed,
        renderer, side_by_side, video, console)."""
        from ehead_cli.listener.generate import run_listener_jobs

        return run_listener_jobs(generator, jobs, **options)

    def evaluate(self, pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, **options: Any) -> Any:
        """``ehead_cli.listener.generate.evaluate_listener`` (options: split, out_dir, affect_estimator,
        convention)."""
        from ehead_cli.listener.generate import evaluate_listener

        return evaluate_listener(pred_dir, gt_dir, **options)

    def bench(self, config: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """``ehead_cli.bench.listener.run_listener_bench`` for a ``ListenerBenchConfig``."""
        from ehead_cli.bench.listener import run_listener_bench

        return run_listener_bench(config, progress)
