"""Generation: the windowed generator, batch jobs, the live streaming session and the Streaming
Audio Scheduler. ``Generator`` is the library's entry point."""

from ehead_cli.generate.generator import Generator

__all__ = ["Generator"]
