"""``python -m ehead_cli.sampledata --out DIR [--clips N] [--seed S]``: generate the sample data;
``--tracker-bias --from CLEAN_DIR``: its tracker-bias variant for Stage II (``tracker_bias``)."""

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
    parser.add_argument("--tracker-bias", action="store_true",
                        help="write the tracker-bias variant of --from instead: labels with a tracker's errors "
                        "(jaw a third smaller and 2 frames late, expression noise, pose jitter), frames rendered "
                        "from the clean motion, the clean motion in OUT/clean")
    parser.add_argument("--from", dest="source", help="with --tracker-bias: the clean sample-data folder")
    parser.add_argument("--identity", default=None, help="with --tracker-bias: whose shape every clip shows "
                        "(default id00)")
    parser.add_argument("--size", type=int, default=None, help="with --tracker-bias: the frames' side in pixels "
                        "(default 256, the avatar's; 128 trains Stage II four times faster on a CPU)")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    if args.tracker_bias != bool(args.source):
        parser.error("--tracker-bias and --from CLEAN_DIR go together")
    if args.identity and not args.tracker_bias:
        parser.error("--identity applies to --tracker-bias")
    if args.size is not None and (not args.tracker_bias or args.size < 16):
        parser.error("--size applies to --tracker-bias and must be at least 16")
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        if args.tracker_bias:
            from ehead_cli.io.frames import FRAME_SIZE
            from ehead_cli.sampledata.tracker_bias import DEFAULT_IDENTITY, build_tracker_bias

            manifest = build_tracker_bias(args.source, args.out, args.seed, args.identity or DEFAULT_IDENTITY,
                                          size=args.size or FRAME_SIZE, progress=say)
        else:
            manifest = build_dataset(args.out, args.clips, args.seed, progress=say)
    except EheadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(manifest)} clips, {manifest['duration'].sum() / 60:.1f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
