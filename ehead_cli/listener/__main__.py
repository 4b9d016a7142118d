"""``python -m ehead_cli.listener ablation --data DIR --out DIR``: the supplement's Table 2 (a research
script, not a product command; training, generation, evaluation and speed are ``ehead train / generate /
eval / bench --family listener``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ehead_cli.errors import EheadError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ehead_cli.listener")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ablation", help="the supplement's Table 2: train and evaluate Naive, MM only, ID only, Full")
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--preset", default="small")
    a.add_argument("--no-train", action="store_true", help="evaluate the runs already in --out")
    args = p.parse_args(argv)
    try:
        import torch

        from ehead_cli.listener.ablation import run_ablation

        torch.set_num_threads(1)
        run_ablation(args.data, args.out, args.preset, train=not args.no_train)
    except EheadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
