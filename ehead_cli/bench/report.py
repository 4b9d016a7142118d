"""The console view of a benchmark result: one rich table per measurement, and the paper's figures."""

from __future__ import annotations

from typing import Any

# (title, result key, columns as (heading, format of a row)) of each printed table
_TABLES = (
    ("motion generation (frames/s)", "motion",
     (("steps", "{steps}"), ("batch", "{batch}"), ("motion only", "{motion_only_fps:,.0f}"),
      ("with audio encoding", "{motion_with_audio_fps:,.0f}"), ("window (ms)", "{window_ms_median:.1f}"))),
    ("single-stream latency per 100-frame window (audio encoding included)", "latency",
     (("steps", "{steps}"), ("p50 (ms)", "{p50_ms:.1f}"), ("p95 (ms)", "{p95_ms:.1f}"))),
    ("built-in renderer (frames/s)", "render",
     (("batch", "{batch}"), ("size", "{size} px"), ("frames/s", "{render_fps:,.0f}"))),
    ("neural avatar renderer (frames/s)", "avatar",
     (("batch", "{batch}"), ("size", "{size} px"), ("frames/s", "{avatar_fps:,.1f}"))),
    ("end to end: audio -> motion -> rendered MP4 with audio, one stream", "end_to_end",
     (("steps", "{steps}"), ("size", "{size} px"), ("frames/s", "{end_to_end_fps:.1f}"),
      ("x real time", "{realtime_factor:.2f}"))),
)


def print_bench(result: dict[str, Any], console) -> None:
    """Rich tables of a ``run_bench`` result, with the paper's figures for comparison."""
    from rich.table import Table

    env, res = result["environment"], result["results"]
    console.print(f"device: {env['device_name']} ({env['device_type']}), torch {env['torch']}, dtype {env['dtype']}, "
                  f"threads {env['threads']}, compile {env['compile']}, preset {env['preset']}, "
                  f"audio encoder {env['audio_encoder']}, load average {env['load_average_before']}")
    for title, key, columns in _TABLES:
        if not res.get(key):
            continue
        t = Table(title=title)
        for heading, _ in columns:
            t.add_column(heading, justify="right")
        for row in res[key]:
            t.add_row(*(fmt.format(**row) for _, fmt in columns))
        console.print(t)
    p = result["paper"]
    console.print(f"for comparison, {p['note']}: over {p['motion_only_fps']} frames/s motion only and "
                  f"{p['end_to_end_fps']} frames/s end to end on {p['device']}.")
