"""The training code's progress as a stream of events: one line of output each,
`ftapp-event {json}`, written by the training process wherever it runs (a child process
here, a Ray job on a cluster) and read back by the worker, which turns them into rows
(ftapp.training.recorder). Standard library only.

The events, in the order a run emits them (every one has "event", "seq" and "time"):

| event      | fields                                                                  |
|------------|-------------------------------------------------------------------------|
| started    | step (0, or the checkpoint's step when resumed), total_steps, attempt   |
| step       | step, epoch, loss, learning_rate, grad_norm, tokens_per_second, and     |
|            | the preference rewards (rewards_chosen, rewards_rejected, ...)          |
| evaluation | step, epoch, loss (validation), and the preference rewards              |
| checkpoint | step, path (relative to the run's output folder), eval_loss             |
| finished   | adapter (relative path), best_checkpoint (relative path or null),       |
|            | metrics, cancelled (true: stopped early on request, the adapter kept)   |
| failed     | reason                                                                  |

A line may carry a prefix before `ftapp-event ` (Ray forwards a worker's output as
"(RayTrainWorker pid=...) ftapp-event {...}"); everything else on the output is log text.
Paths are relative so the same event means the same file on the cluster's storage and in
FTAPP_HOME once the runner has copied it back.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from typing import Any

EVENT_PREFIX = "ftapp-event "
# The runner's one message the other way: this file in the job's output folder asks the
# training to stop at the next step (ftapp.training.progress).
CANCEL_FILE = "cancel-requested"
KINDS = ("started", "step", "evaluation", "checkpoint", "finished", "failed")
_sequence = itertools.count(1)


def event_line(kind: str, **fields: Any) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown training event {kind!r}")
    event = {"event": kind, "seq": next(_sequence), "time": round(time.time(), 3), **fields}
    return EVENT_PREFIX + json.dumps(event, default=str)


def emit(kind: str, **fields: Any) -> None:
    """Write one event to standard output, at once (the reader follows it live). Written to
    the stream, not through print(): Ray Train patches print() to log each line a second
    time."""
    sys.stdout.write(event_line(kind, **fields) + "\n")
    sys.stdout.flush()


def parse_events(text: str) -> list[dict[str, Any]]:
    """The events in complete lines of output, in order; other lines are skipped, and so is a
    line that is cut off or garbled (a process killed mid-write)."""
    events = []
    for line in text.split("\n"):
        start = line.find(EVENT_PREFIX)
        if start < 0:
            continue
        try:
            event = json.loads(line[start + len(EVENT_PREFIX) :])
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") in KINDS:
            events.append(event)
    return events


def complete_lines(chunk: bytes) -> bytes:
    """The part of `chunk` up to and including its last newline: a line still being written
    is read again next time, whole."""
    end = chunk.rfind(b"\n")
    return chunk[: end + 1] if end >= 0 else b""


def is_event_line(line: str) -> bool:
    return EVENT_PREFIX in line
