"""The motion-magnitude control on real speech: head rotation and translation speed of generated
motion at magnitude m = (m, m) for m = 0, 0.25, 0.5, 0.75, 1 (the paper's Table S3 shows a strong
monotone effect).

Every LibriSpeech clip in ``--data/librispeech`` (up to ``--clips``) is generated as the agent's
speech (all frames speaking) and, separately, as the microphone (all listening), with 4 Euler steps
and seeds 0..``--seeds``-1; speed is ``model.stats.motion_magnitude``'s: the mean geodesic angle
between consecutive head rotations (deg/s) and the mean step of the head translation (mm/s), over
all frames. Reported per m and the ratio m = 1 over m = 0.

Run from a checkout: python benchmarks/magnitude_control.py --data ../shared/data [--checkpoint DIR];
writes benchmarks/magnitude-<model>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ehead_cli.generate.generator import Generator  # noqa: E402
from ehead_cli.io.audio import load_audio  # noqa: E402
from ehead_cli.layout import LISTEN, MOTION_FPS, SAMPLES_PER_FRAME, SPEAK  # noqa: E402
from ehead_cli.model.stats import motion_magnitude  # noqa: E402

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with librispeech/")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped demo model)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = Generator.from_checkpoint(args.checkpoint, device="cpu", steps=4)
    clips = sorted((args.data / "librispeech").glob("*.flac"))[: args.clips]
    rows = []
    for state, name in ((SPEAK, "speaking"), (LISTEN, "listening")):
        for m in LEVELS:
            rot, trans = [], []
            for clip in clips:
                audio = load_audio(clip)
                n = -(-len(audio) // SAMPLES_PER_FRAME)
                for seed in range(args.seeds):
                    motion = gen.generate(audio, np.full(n, state, np.int8), seed=seed, magnitude=(m, m)).motion
                    mr, mt = motion_magnitude(torch.from_numpy(motion)).tolist()
                    rot.append(np.degrees(mr) * MOTION_FPS)
                    trans.append(1000 * mt * MOTION_FPS)
            rows.append({"state": name, "magnitude": m, "rotation_deg_s": float(np.mean(rot)),
                         "translation_mm_s": float(np.mean(trans))})
            print(json.dumps(rows[-1]), flush=True)
    ratios = {}
    for name in ("speaking", "listening"):
        r = [x for x in rows if x["state"] == name]
        ratios[name] = {"rotation": r[-1]["rotation_deg_s"] / r[0]["rotation_deg_s"],
                        "translation": r[-1]["translation_mm_s"] / r[0]["translation_mm_s"],
                        "monotone": all(a["rotation_deg_s"] < b["rotation_deg_s"]
                                        and a["translation_mm_s"] < b["translation_mm_s"]
                                        for a, b in zip(r, r[1:], strict=False))}
    model = Path(args.checkpoint).name if args.checkpoint else "ehead-small-mel"
    target = args.json or REPO / "benchmarks" / f"magnitude-{model}.json"
    target.write_text(json.dumps({"model": model, "clips": [c.name for c in clips], "seeds": args.seeds,
                                  "rows": rows, "ratio_1_over_0": ratios}, indent=2) + "\n")
    print("| state | m | head rotation, deg/s | head translation, mm/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['state']} | {r['magnitude']:g} | {r['rotation_deg_s']:.2f} | {r['translation_mm_s']:.2f} |")
    print(json.dumps(ratios))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
