"""Training: one generic loop (``loop``) and what it trains (``stage1``: coefficient-space flow
matching), with its parts: the run configuration and schedule (``config``), EMA (``ema``), the
many-process helpers (``distributed``), the exact resume state (``state``), the metrics CSV, loss plot
and progress bar (``logging``), and the training windows (``data``)."""
