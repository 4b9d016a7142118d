"""What hop streaming costs in motion quality: live sessions at hops H (and look-aheads A) against
offline generation of the same audio and states, on real speech.

Conversations: a LibriSpeech utterance as the agent, then a GRID sentence as the user on the
microphone, then another LibriSpeech utterance as the agent; the microphone runs the whole time
(quiet, -50 dBFS noise, while the agent speaks) and is pushed in 20 ms chunks; each agent utterance is
pushed whole when it starts (a TTS that delivers ahead of playback, the common case) or, with
``--tts realtime``, in 20 ms chunks as it plays (then only a look-ahead gives right context). Every
session runs through ``StreamingSession(hop=H, lookahead=A)`` with ``record``; its reference is
``Generator.generate`` of the session's own single-stream audio and states (full right context, the
paper's offline generation). Measured on each, then streamed against offline:

* ``jaw_r``: Pearson r of the jaw opening (motion dim 100, the jaw's pitch) with the speech envelope
  (per-frame RMS of the frame's 640 samples, 3-frame moving average), speaking frames;
* ``listen_jaw_ratio``: the jaw's standard deviation over listening frames / over speaking frames;
* ``upper_face_mm``: the mean over the built-in head's upper-face vertices of their standard
  deviation over time, head pose removed (mm);
* ``seam_ratio``: the mean third difference (L2 over the lip and upper-face vertices, mm) of the
  stencils centred on a hop boundary (frames b - 2 .. b + 1) over that of all other stencils; 1 is
  seamless. Offline's is measured at the same frames. Sessions cross-fade ``--blend`` frames at
  each hop (3, the default of ``StreamingSession``; 0: none).

Run from a checkout: python benchmarks/hop_quality.py --data ../shared/data (LibriSpeech and GRID
folders there) [--checkpoint DIR]; writes benchmarks/hop-quality-<model>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ehead_cli.face.loading import load_face_model  # noqa: E402
from ehead_cli.generate.generator import Generator  # noqa: E402
from ehead_cli.io.audio import load_audio  # noqa: E402
from ehead_cli.layout import SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: E402
from ehead_cli.metrics.vertex import MM_PER_M, metric_geometry  # noqa: E402

CHUNK = 320
JAW = 100


def conversations(data: Path, n: int) -> list[tuple[np.ndarray, list[tuple[float, np.ndarray]]]]:
    """(microphone, [(start s, agent utterance)]) for ``n`` conversations."""
    ls = sorted((data / "librispeech").glob("*.flac"))
    grid = sorted((data / "grid").glob("*.mpg"))
    if len(ls) < 2 * n or len(grid) < n:
        raise SystemExit(f"{data}: needs {2 * n} LibriSpeech .flac and {n} GRID .mpg files")
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a1, a2 = (load_audio(p)[: 12 * SAMPLE_RATE] for p in ls[2 * i: 2 * i + 2])
        user = load_audio(grid[i])
        gap = int(0.5 * SAMPLE_RATE)
        mic = (rng.normal(size=len(a1) + gap + len(user) + gap + len(a2) + SAMPLE_RATE) * 0.003).astype(np.float32)
        mic[len(a1) + gap: len(a1) + gap + len(user)] += user
        out.append((mic, [(0.0, a1), ((len(a1) + 2 * gap + len(user)) / SAMPLE_RATE, a2)]))
    return out


def stream(gen: Generator, mic: np.ndarray, agent: list[tuple[float, np.ndarray]], hop: int, lookahead: int,
           realtime_tts: bool, seed: int, blend: int = 3):
    """A live session over the conversation: (streamed motion, the session's audio and states)."""
    s = gen.stream(seed=seed, hop=hop, lookahead=lookahead, blend=blend)
    frames = []
    queued = [(int(t * SAMPLE_RATE), a) for t, a in agent]
    playing: list[tuple[int, np.ndarray]] = []
    for start in range(0, len(mic), CHUNK):
        while queued and queued[0][0] <= start:
            t, a = queued.pop(0)
            if realtime_tts:
                playing.append((t, a))
            else:
                s.push(a, "agent", end_of_utterance=True)
        for t, a in playing:  # a real-time TTS: the next 20 ms of the utterance as it plays
            k = start - t
            if k < len(a):
                s.push(a[k:k + CHUNK], "agent", end_of_utterance=k + CHUNK >= len(a))
        frames += s.push(mic[start:start + CHUNK], "mic")
    last = s.flush()
    if last is not None:
        frames.append(last)
    return np.concatenate(frames), s.audio, s.states


def envelope(audio: np.ndarray, n: int) -> np.ndarray:
    a = np.pad(audio, (0, max(0, n * SAMPLES_PER_FRAME - len(audio))))[: n * SAMPLES_PER_FRAME]
    rms = np.sqrt((a.reshape(n, SAMPLES_PER_FRAME) ** 2).mean(1))
    return np.convolve(rms, np.ones(3) / 3, mode="same")


def measures(face, motion: np.ndarray, audio: np.ndarray, states: np.ndarray, hop: int) -> dict:
    n = len(motion)
    states = states[:n]
    speak, listen = states == 1, states == -1
    jaw = motion[:, JAW]
    env = envelope(audio, n)
    geo = metric_geometry(face, np.zeros(300, np.float32), motion)
    verts = np.concatenate([geo.lips, geo.upper], 1) * MM_PER_M  # (n, V, 3) mm
    d3 = np.linalg.norm(verts[3:] - 3 * verts[2:-1] + 3 * verts[1:-2] - verts[:-3], axis=-1).mean(1)  # stencil t..t+3
    at = np.zeros(len(d3), bool)
    at[np.arange(hop - 2, len(d3), hop)[np.arange(hop - 2, len(d3), hop) >= 0]] = True  # boundary b = t + 2
    return {
        "jaw_r": float(np.corrcoef(jaw[speak], env[speak])[0, 1]),
        "listen_jaw_ratio": float(jaw[listen].std() / jaw[speak].std()),
        "upper_face_mm": float((geo.upper * MM_PER_M).std(0).mean()),
        "d3_at_seams": float(d3[at].mean()), "d3_elsewhere": float(d3[~at].mean()),
        "seam_ratio": float(d3[at].mean() / d3[~at].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with librispeech/ and grid/")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped demo model)")
    ap.add_argument("--hops", default="100,20,10,5,2")
    ap.add_argument("--lookaheads", default="0,2,5", help="look-aheads tried at --lookahead-hop")
    ap.add_argument("--lookahead-hop", type=int, default=5)
    ap.add_argument("--tts", choices=("ahead", "realtime"), default="ahead")
    ap.add_argument("--conversations", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--blend", type=int, default=3, help="frames cross-faded at each hop (StreamingSession blend)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = Generator.from_checkpoint(args.checkpoint, device="cpu", steps=args.steps)
    face = load_face_model(None)
    convs = conversations(args.data, args.conversations)
    runs = [(h, 0) for h in map(int, args.hops.split(","))]
    extra = [(args.lookahead_hop, a) for a in map(int, args.lookaheads.split(","))]
    runs += [r for r in extra if r not in runs]
    rows = []
    for hop, la in runs:
        per = []
        t0 = time.perf_counter()
        for i, (mic, agent) in enumerate(convs):
            motion, audio, states = stream(gen, mic, agent, hop, la, args.tts == "realtime", seed=i, blend=args.blend)
            ref = gen.generate(audio, states, seed=i).motion
            per.append({"streamed": measures(face, motion, audio, states, hop),
                        "offline": measures(face, ref, audio, states, hop),
                        "frames": len(motion), "speaking": int((states == 1).sum())})
        row = {"hop": hop, "lookahead": la, "tts": args.tts, "blend": args.blend, "seconds": time.perf_counter() - t0,
               "frames": sum(p["frames"] for p in per)}
        for side in ("streamed", "offline"):
            row[side] = {k: float(np.mean([p[side][k] for p in per])) for k in per[0][side]}
        rows.append(row)
        s, o = row["streamed"], row["offline"]
        print(json.dumps({"hop": hop, "lookahead": la, "jaw_r": [round(s["jaw_r"], 3), round(o["jaw_r"], 3)],
                          "listen_jaw": [round(s["listen_jaw_ratio"], 3), round(o["listen_jaw_ratio"], 3)],
                          "upper_mm": [round(s["upper_face_mm"], 3), round(o["upper_face_mm"], 3)],
                          "seam": [round(s["seam_ratio"], 3), round(o["seam_ratio"], 3)]}), flush=True)
    model = Path(args.checkpoint).name if args.checkpoint else "ehead-small-mel"
    target = args.json or REPO / "benchmarks" / f"hop-quality-{model}-tts-{args.tts}-blend{args.blend}.json"
    target.write_text(json.dumps({"model": model, "steps": args.steps, "conversations": args.conversations,
                                  "rows": rows}, indent=2) + "\n")
    print(table(rows))
    print(f"wrote {target}")


def table(rows: list[dict]) -> str:
    out = ["| hop | look-ahead | jaw r, speaking (offline) | listening / speaking jaw sd (offline) | "
           "upper-face sd, mm (offline) | seam ratio (offline) |", "|---|---|---|---|---|---|"]
    for r in rows:
        s, o = r["streamed"], r["offline"]
        out.append(f"| {r['hop']} | {r['lookahead']} | {s['jaw_r']:.3f} ({o['jaw_r']:.3f}) | "
                   f"{s['listen_jaw_ratio']:.3f} ({o['listen_jaw_ratio']:.3f}) | "
                   f"{s['upper_face_mm']:.3f} ({o['upper_face_mm']:.3f}) | "
                   f"{s['seam_ratio']:.2f} ({o['seam_ratio']:.2f}) |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
