"""How long the server spent in each event handler: every guarded handler's call is timed
(ui/common.py) and kept here, in this process, for the last MAX_CALLS calls. Admins read
the summary in the About tab (or `/server_times`); benchmarks/load_arena.py reads it beside
the latency its clients saw, so a slow page says whether the time went in the handler or
in the queue and the wire before it.

A streaming handler's time is the whole stream (a reply being generated), not its first
item."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

MAX_CALLS = 200_000


@dataclass(frozen=True)
class HandlerSummary:
    handler: str
    calls: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    busy_share: float  # seconds spent in it ÷ seconds in the window: its share of one thread


class HandlerTimes:
    """(when it ended, handler, seconds) of recent calls; safe to record from any thread."""

    def __init__(self, max_calls: int = MAX_CALLS):
        self._calls: deque[tuple[float, str, float]] = deque(maxlen=max_calls)
        self._lock = threading.Lock()

    def record(self, handler: str, seconds: float) -> None:
        with self._lock:
            self._calls.append((time.monotonic(), handler, seconds))

    def summary(self, window_seconds: float) -> list[HandlerSummary]:
        """The calls that ended in the last `window_seconds`, by handler, busiest first."""
        since = time.monotonic() - window_seconds
        with self._lock:
            recent = [(name, seconds) for ended, name, seconds in self._calls if ended >= since]
        by_handler: dict[str, list[float]] = {}
        for name, seconds in recent:
            by_handler.setdefault(name, []).append(seconds)
        rows = []
        for name, values in by_handler.items():
            p50, p95, p99 = np.percentile(np.array(values) * 1000, [50, 95, 99])
            rows.append(HandlerSummary(name, len(values), float(p50), float(p95), float(p99),
                                       sum(values) / window_seconds))  # fmt: skip
        return sorted(rows, key=lambda row: -row.busy_share)


# The app's one record: handlers of every tab and session write to it.
HANDLER_TIMES = HandlerTimes()
