"""``python -m ehead_cli.sampledata --out DIR [--clips N] [--seed S]``: generate the sample data."""

from __future__ import annotations

import argparse
import sys

from ehead_cli.errors import EheadError
from ehead_cli.sampledata.build import DEFAULT_CLIPS, DEFAULT_SEED, build_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ehead_cli.sampledata", description=__doc__)
    parser.add_argument("--out", required=True, help="dataset folder to write (e.g. sample_data)")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="number of clips")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every random choice")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    try:
        manifest = build_dataset(args.out, args.clips, args.seed, progress=lambda line: print(line, file=sys.stderr))
    except EheadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(manifest)} clips, {manifest['duration'].sum() / 60:.1f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
