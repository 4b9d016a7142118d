"""Development entry point: ``python -m ehead_cli.listener COMMAND ...`` (the ehead CLI wires the same
library functions into ``ehead train/generate/eval --family listener``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ehead_cli.errors import EheadError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ehead_cli.listener")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train stage vq or lm")
    t.add_argument("--stage", choices=("vq", "lm"), required=True)
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--preset", default="small")
    t.add_argument("--config", type=Path)
    t.add_argument("--vq", type=Path, help="stage lm: the VQ-VAE checkpoint folder")
    t.add_argument("--lm", help="stage lm: a local pretrained GPT-2 folder")
    t.add_argument("--speech-tokenizer")
    t.add_argument("--emoca")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--device")
    g = sub.add_parser("generate", help="listener motion (+ video) from speaker audio and motion")
    g.add_argument("--checkpoint", type=Path, required=True)
    g.add_argument("--speaker-audio", type=Path, action="append", required=True)
    g.add_argument("--speaker-motion", type=Path, action="append", required=True)
    g.add_argument("--listener-avatar", help="a trained identity's name or a motion NPZ of the listener")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--side-by-side", action="store_true")
    g.add_argument("--no-video", action="store_true")
    g.add_argument("--size", type=int, default=512)
    g.add_argument("--flame")
    e = sub.add_parser("eval", help="listening metrics of predictions against a dyadic dataset")
    e.add_argument("--pred", type=Path, required=True)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--out", type=Path)
    b = sub.add_parser("bench", help="listener frames/s")
    b.add_argument("--checkpoint", type=Path, required=True)
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    a = sub.add_parser("ablation", help="the supplement's Table 2")
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--preset", default="small")
    a.add_argument("--no-train", action="store_true")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except EheadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch

    if args.cmd == "train":
        from ehead_cli.listener.train import train_lm, train_vq

        command = "python -m ehead_cli.listener " + " ".join(sys.argv[1:])
        if args.stage == "vq":
            train_vq(args.data, args.out, args.preset, args.config, resume=args.resume, device=args.device,
                     val_every=250, command=command)
        else:
            if args.vq is None and not args.resume:
                raise SystemExit("--stage lm needs --vq VQ_RUN/checkpoint")
            train_lm(args.data, args.out, vq=args.vq, preset=args.preset if not args.resume else None,
                     config_file=args.config, resume=args.resume, device=args.device, lm_path=args.lm,
                     speech_tokenizer=args.speech_tokenizer, emoca=args.emoca, val_every=250, command=command)
    elif args.cmd == "generate":
        from ehead_cli.listener.generate import ListenerGenerator, ListenerJob, run_listener_jobs

        if len(args.speaker_audio) != len(args.speaker_motion):
            raise SystemExit("give one --speaker-motion per --speaker-audio")
        gen = ListenerGenerator.from_checkpoint(args.checkpoint)
        jobs = [ListenerJob.from_files(a, m, args.listener_avatar, args.out)
                for a, m in zip(args.speaker_audio, args.speaker_motion, strict=True)]
        renderer = None
        if not args.no_video:
            from ehead_cli.face import load_face_model
            from ehead_cli.render import Renderer

            renderer = Renderer(load_face_model(args.flame), size=args.size)
        for j in run_listener_jobs(gen, jobs, temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                                   renderer=renderer, side_by_side=args.side_by_side, video=not args.no_video):
            print(j.name, j.error or ", ".join(str(o) for o in j.outputs))
    elif args.cmd == "eval":
        from rich.console import Console

        from ehead_cli.eval import print_report
        from ehead_cli.listener.generate import evaluate_listener

        print_report(evaluate_listener(args.pred, args.data, args.split, out_dir=args.out), Console())
    elif args.cmd == "bench":
        from ehead_cli.listener.generate import ListenerGenerator, listener_fps

        torch.set_num_threads(args.threads)
        print(json.dumps(listener_fps(ListenerGenerator.from_checkpoint(args.checkpoint), batch=args.batch)))
    elif args.cmd == "ablation":
        from ehead_cli.listener.ablation import run_ablation

        torch.set_num_threads(1)
        run_ablation(args.data, args.out, args.preset, train=not args.no_train)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
