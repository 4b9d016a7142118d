"""The supplement's Table 2 on a dyadic dataset: Naive, MM only, ID only and Full, trained and measured.

    run_ablation("sample_data/dyadic", "runs/ablation", preset="small")

Variants (supplement Table 2): MultiModal = speech and emotion tokens in the LM (``lm.multimodal``);
Identity = the identity-disentangled VQ-VAE (``vq.identity``: IN in the encoder, AdaIN in the decoder).
Two VQ-VAEs are trained (with and without disentanglement) and four LMs on top of them. Each LM
generates the listeners of the ``split`` clips for ``seeds`` sampling seeds (temperature 1, no top-k:
LM-listener samples from the full distribution); the listening metrics are averaged over the seeds,
the VQ-VAE metrics (section 7) are measured on the same clips' ground-truth listeners. Each LM is
evaluated at its ``best/`` checkpoint (lowest validation listener cross-entropy, checked every
``VAL_EVERY`` steps): on 10 minutes of data the LMs overfit within a few hundred steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.checkpoint import RUN_BEST, RUN_CHECKPOINT
from ehead_cli.io.motionfile import save_motion
from ehead_cli.listener.checkpoint import load_listener
from ehead_cli.listener.generate import ListenerGenerator, dataset_jobs, evaluate_listener, vq_metrics
from ehead_cli.listener.train import train_lm, train_vq
from ehead_cli.train.state import STATE_DIR

VARIANTS = {  # name: (multimodal, identity)
    "naive": (False, False),
    "mm_only": (True, False),
    "id_only": (False, True),
    "full": (True, True),
}
LABELS = {"naive": "Naive", "mm_only": "MM only", "id_only": "ID only", "full": "Full"}
# Supplement Table 2 (RealTalk): L2, FD, Variation, Diversity, P-FD, L2 Affect (x 10^2)
PAPER = {"gt": (None, None, 0.1148, 2.6053, None, None),
         "naive": (0.2026, 9.6016, 0.0313, 1.5817, 9.9899, 11.6484),
         "mm_only": (0.1794, 8.2897, 0.0297, 1.5629, 8.6663, 10.6285),
         "id_only": (0.0882, 3.5803, 0.0123, 1.0175, 3.8507, 5.7948),
         "full": (0.0860, 3.3939, 0.0130, 1.0426, 3.6768, 5.2537)}
VAL_EVERY = 50  # validation (and best/ selection) interval of the LMs
KEYS = ("l2_exp", "l2_pose", "fd_exp", "fd_pose", "pfd_exp", "pfd_pose", "variation_exp", "diversity_exp")


def _finished(run: Path, stage: str) -> bool:
    """True when ``run``'s checkpoint has reached its stage's last step."""
    if not (run / RUN_CHECKPOINT / "config.json").is_file():
        return False
    model = load_listener(run / RUN_CHECKPOINT)
    sched = model.cfg.train_vq if stage == "vq" else model.cfg.train_lm
    return model.meta.get("stage") == stage and model.meta.get("step") == sched.steps


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path, split: str = "test",
                        seeds: tuple[int, ...] = (0, 1, 2), temperature: float = 1.0,
                        top_k: int | None = None) -> dict[str, Any]:
    """Generate ``split``'s listeners with ``checkpoint`` for each seed, evaluate, average over seeds."""
    gen = ListenerGenerator.from_checkpoint(checkpoint)
    per_seed = []
    for seed in seeds:
        pred = Path(out) / f"pred_seed{seed}"
        jobs = dataset_jobs(data, split, pred)
        for j, m in zip(jobs, gen.generate(jobs, temperature=temperature, top_k=top_k, seed=seed), strict=True):
            save_motion(j.out.with_suffix(".npz"), m)
        report = evaluate_listener(pred, data, split)
        overall = report.overall["prediction"]["listening"]
        gt = report.overall.get("ground truth", {}).get("listening", {})
        per_seed.append({k: float(v) for k, v in overall.items() if isinstance(v, float)})
        gt_values = {k: float(v) for k, v in gt.items() if isinstance(v, float)}
    mean = {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
    std = {k: float(np.std([s[k] for s in per_seed])) for k in per_seed[0]}
    return {"mean": mean, "std": std, "per_seed": per_seed, "ground_truth": gt_values,
            "vq": vq_metrics(load_listener(checkpoint), data, split)}


def run_ablation(data: str | Path, out: str | Path, preset: str = "small", split: str = "test",
                 seeds: tuple[int, ...] = (0, 1, 2), train: bool = True,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (unless ``train`` is False and the runs exist) and evaluate the four variants; writes
    ``out/results.json`` and ``out/table.md`` and returns the results."""
    out = Path(out)
    if train:
        for name, ident in (("vq_id", True), ("vq_plain", False)):
            if not _finished(out / name, "vq"):
                train_vq(data, out / name, preset=preset, overrides={"vq": {"identity": ident}}, progress=False,
                         resume=(out / name / STATE_DIR).is_dir())
                log(f"trained {name}")
        for name, (mm, ident) in VARIANTS.items():
            if not _finished(out / name, "lm"):
                vq = out / ("vq_id" if ident else "vq_plain") / RUN_CHECKPOINT
                train_lm(data, out / name, vq=vq, preset=preset,
                         overrides={"lm": {"multimodal": mm}, "train_lm": {"val_every": VAL_EVERY, "keep_best": True}},
                         progress=False, resume=(out / name / STATE_DIR).is_dir())
                log(f"trained {name}")
    results = {}
    for name in VARIANTS:
        results[name] = evaluate_checkpoint(out / name / RUN_BEST, data, out / name / "eval", split, seeds)
        results[name]["best_step"] = load_listener(out / name / RUN_BEST).meta.get("step")
        log(f"evaluated {name}: " + ", ".join(f"{k} {results[name]['mean'][k]:.4g}" for k in KEYS[:6]))
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(ablation_table(results))
    return results


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def ablation_table(results: dict[str, Any]) -> str:
    """Markdown: measured values (mean ± std over seeds, 3 significant digits) beside the supplement's."""
    lines = ["| method | MM | ID | best step | L2 exp | L2 pose | FD exp | FD pose | P-FD exp | P-FD pose | "
             "Variation exp | Diversity exp | VQ Rec exp | VQ Commit | VQ PPL | paper L2 | paper FD | paper P-FD |",
             "|" + "---|" * 18]
    gt = next(iter(results.values()))["ground_truth"]
    lines.append(f"| GT | | | | | | | | | | {_fmt(gt.get('variation_exp'))} | {_fmt(gt.get('diversity_exp'))} "
                 f"| | | | | | |")
    for name, (mm, ident) in VARIANTS.items():
        r = results[name]
        m, s, vq, p = r["mean"], r["std"], r["vq"], PAPER[name]
        cells = [f"{m[k]:.3g} ± {s[k]:.2g}" for k in KEYS]
        lines.append(f"| {LABELS[name]} | {'✓' if mm else '×'} | {'✓' if ident else '×'} | {r.get('best_step', '')} | "
                     + " | ".join(cells) + f" | {vq['rec_exp']:.4f} | {vq['commit']:.4f} | {vq['perplexity']:.1f} | "
                     f"{_fmt(p[0])} | {_fmt(p[1])} | {_fmt(p[4])} |")
    return "\n".join(lines) + "\n"
