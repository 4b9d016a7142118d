"""``ehead serve``: live conversations over WebSocket, and a page that talks with the avatar."""

from __future__ import annotations

from typing import Annotated

import typer

from ehead_cli import checks
from ehead_cli.cli import options as opt
from ehead_cli.cli.shell import console, note_interruption, say, set_threads
from ehead_cli.errors import ConfigError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

Flame = opt.flame("for an --avatar folder fitted on FLAME")
Checkpoint = opt.checkpoint("Checkpoint or run folder (default: the shipped demo model).")


def serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on. The default is this machine only; any other address (0.0.0.0: every "
        "interface) must be asked for, and then wants --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", callback=lambda v: checks.port(v))] = 8000,
    checkpoint: Checkpoint = None,
    avatar: opt.ServedAvatar = None,
    token: Annotated[str | None, typer.Option(
        envvar="EHEAD_TOKEN", show_envvar=False,
        help="Secret every WebSocket connection and /stats must present (or EHEAD_TOKEN, which keeps it out of "
        "the process list).")] = None,
    steps: opt.Steps = 4,
    size: opt.Size = 256,
    device: opt.Device = None,
    audio_encoder: opt.AudioEncoder = None,
    flame: Flame = None,
    threads: opt.Threads = None,
    hop: Annotated[str, typer.Option(
        help="Frames each live window sends, 1..the model's window (100): a frame leaves at most hop frames plus "
        "a window's compute after its speech. auto: the smallest hop this device keeps up with, timed at start "
        "(a client's hello may ask for its own).", metavar="FRAMES|auto")] = "auto",
    lookahead: Annotated[int, typer.Option(
        help="Frames of right context (audio past the frames sent) each live window waits for; adds its length "
        "to the latency.", metavar="FRAMES")] = 0,
) -> None:
    """Live conversations over WebSocket (/ws: audio in, motion and JPEG frames out) and a page that talks
    with the avatar (/). The protocol: docs/serve-protocol.md."""
    try:
        import uvicorn

        from ehead_cli.serve.app import EheadServer, uvicorn_config
    except ImportError as err:
        raise ConfigError(f"ehead serve needs {err.name}: pip install starlette uvicorn websockets") from None
    from ehead_cli.avatar.identity import Avatar
    from ehead_cli.avatar.renderers import avatar_or_refined
    from ehead_cli.generate.generator import Generator
    from ehead_cli.serve.session import ServeConfig

    if host not in LOOPBACK_HOSTS and not token:
        say(f"warning: serving on {host} without --token: anyone who can reach port {port} can connect")
    set_threads(threads)
    gen = Generator.from_checkpoint(checkpoint, device=device, hubert_path=audio_encoder, steps=steps)
    served = avatar_or_refined(avatar, checkpoint)  # a Stage-II checkpoint serves its refined renderer
    if served is not None and avatar is None:
        say(f"serving the checkpoint's Stage-II renderer {served}")
    person = Avatar.load(served, device=gen.device, flame=flame) if served else None
    hop_frames, lookahead = live_hop(gen, hop, lookahead)
    server = EheadServer(gen, avatar=person, token=token,
                         config=ServeConfig(jpeg_size=size, hop=hop_frames, lookahead=lookahead))
    shown = f"[{host}]" if ":" in host else host
    console.print(f"ehead serve: http://{shown}:{port}/ (the page), ws://{shown}:{port}/ws, /health, /stats"
                  f"{'; token required' if token else ''}; Ctrl-C stops", markup=False, highlight=False)
    note_interruption(lambda: "server stopped")
    uvicorn.Server(uvicorn_config(server, host, port)).run()


def live_hop(gen, hop: str, lookahead: int) -> tuple[int, int]:
    """``--hop`` (a whole number or auto) and ``--lookahead`` checked against the model's window."""
    from ehead_cli.layout import MOTION_FPS
    from ehead_cli.serve.hop import choose_hop, measure_window_ms

    T = gen.cfg.window
    if hop.strip().lower() == "auto":
        ms = measure_window_ms(gen)
        frames = choose_hop(ms, T)
        say(f"hop {frames} frames ({1000 * frames / MOTION_FPS:.0f} ms): a window takes {ms:.0f} ms on {gen.device} "
            "(--hop sets it)")
    else:
        try:
            frames = int(hop)
        except ValueError:
            raise ConfigError(f"--hop must be a whole number of frames or auto, got {hop!r}") from None
        frames = checks.hop(frames, T)
    return frames, checks.lookahead(lookahead, frames, T)
