"""The EmbodiedHead family: the Rectified-Flow DiT (``ehead_cli.model``), trained in Stage I on
motion and in Stage II with a renderer on video, generating motion (and video) from audio and
listening/speaking states. Its checkpoint folder: ``ehead_cli.model.checkpoint``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ehead_cli.family.base import ModelFamily, Stage
from ehead_cli.generate.jobs import FileJob
from ehead_cli.model.checkpoint import CHECKPOINT_FORMAT


def train_stage1(*args: Any, **kwargs: Any) -> Any:
    """``ehead_cli.train.stage1.train``: the DiT on the motion of a dataset folder."""
    from ehead_cli.train.stage1 import train

    return train(*args, **kwargs)


def train_stage2(*args: Any, **kwargs: Any) -> Any:
    """``ehead_cli.train.stage2.train``: the DiT and its renderers on a dataset's video frames."""
    from ehead_cli.train.stage2 import train

    return train(*args, **kwargs)


class EmbodiedHeadFamily(ModelFamily):
    name = "embodiedhead"
    summary = "the Rectified-Flow DiT: motion from audio and listening/speaking states"
    checkpoint_format = CHECKPOINT_FORMAT
    stages = (Stage("1", "the DiT on a dataset's motion (flow matching)", "ehead_cli.train.stage1.train",
                    train_stage1),
              Stage("2", "the DiT and its renderers on a dataset's video frames", "ehead_cli.train.stage2.train",
                    train_stage2))
    default_stage = "1"
    job_type = FileJob

    def load(self, checkpoint: str | os.PathLike, device: str = "cpu", hubert_path: str | None = None) -> Any:
        from ehead_cli.model.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint, hubert_path=hubert_path, device=device)

    def generator(self, checkpoint: str | os.PathLike | None, device: str | None = None, **options: Any) -> Any:
        """``Generator.from_checkpoint`` (options: hubert_path, steps, magnitude, batch_size)."""
        from ehead_cli.generate.generator import Generator

        return Generator.from_checkpoint(checkpoint, device=device, **options)

    def run_jobs(self, generator: Any, jobs: list[FileJob], **options: Any) -> list[FileJob]:
        """``ehead_cli.generate.jobs.run_jobs`` (options: seed, renderer, video, console, flame)."""
        from ehead_cli.generate.jobs import run_jobs

        return run_jobs(generator, jobs, **options)

    def evaluate(self, pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, **options: Any) -> Any:
        """``ehead_cli.eval.evaluate`` (options: metrics, convention, split, baseline, ...)."""
        from ehead_cli.eval import evaluate

        return evaluate(pred_dir, gt_dir, **options)

    def bench(self, config: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """``bench.run.run_bench`` for a ``BenchConfig``, ``bench.stage2.run_stage2_bench`` for a
        ``Stage2BenchConfig`` (Stage II's training throughput)."""
        from ehead_cli.bench.stage2 import Stage2BenchConfig, run_stage2_bench

        if isinstance(config, Stage2BenchConfig):
            return run_stage2_bench(config, progress)
        from ehead_cli.bench.run import run_bench

        return run_bench(config, progress)
