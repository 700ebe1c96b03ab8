"""Several answers streamed at the same time: each stream runs in a thread of its own and its
pieces are passed on as they come, so the side that answers first is not held up by the other.
The Arena's free battles (two contestants) and the Playground's side-by-side compare (two to
four models) read their streams through `stream_together`; `compare_replies` is the compare's
request: one conversation per model, the same sampling for all.

Stopping early (the caller closes the iterator: Stop, a closed page) closes every stream that
is still running, so the engine stops generating and nothing runs on unseen.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from ftapp.errors import NotFound, ValidationError
from ftapp.generation.chat import ChatFn
from ftapp.serving.backend import Sampling

K = TypeVar("K")
JOIN_SECONDS = 5.0  # how long a stopped stream's thread is waited for
MAX_COMPARED = 4  # models side by side: more would not fit a screen, nor a CPU


@dataclass(frozen=True)
class StreamEvent(Generic[K]):
    key: K
    piece: str | None = None  # a piece of text; None for the end of the stream
    error: str | None = None  # why the stream failed (sent before its end)
    elapsed_ms: int | None = None  # with the end: the stream's time from start to end


def stream_together(
    starts: Mapping[K, Callable[[], Iterable[str]]],
) -> Iterator[StreamEvent[K]]:
    """Start every stream (`starts`: key -> a function that opens it) in its own thread and
    yield its events in the order they happen: pieces, then an error if it failed, then its
    end. Ends once every stream has ended."""
    events: queue.Queue[StreamEvent[K]] = queue.Queue()
    stop = threading.Event()

    def run(key: K, start: Callable[[], Iterable[str]]) -> None:
        started = time.monotonic()
        stream: Iterable[str] | None = None
        try:
            stream = start()
            for piece in stream:
                if stop.is_set():
                    break
                events.put(StreamEvent(key, piece=piece))
        except Exception as exc:  # the engine failed: this side says so, the others go on
            events.put(StreamEvent(key, error=str(exc)))
        finally:
            getattr(stream, "close", lambda: None)()
            elapsed = round((time.monotonic() - started) * 1000)
            events.put(StreamEvent(key, elapsed_ms=elapsed))

    threads = [threading.Thread(target=run, args=item, daemon=True, name="ftapp-stream")
               for item in starts.items()]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            event = events.get()
            if event.piece is None and event.error is None:
                running -= 1
            yield event
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=JOIN_SECONDS)


def compare_models(models: list[str], servable: list[str]) -> list[str]:
    """The models of a side-by-side compare: two to MAX_COMPARED different names, each one of
    the `servable` models (refused before anything is generated)."""
    chosen = list(dict.fromkeys(m.strip() for m in models if m and m.strip()))
    if not 2 <= len(chosen) <= MAX_COMPARED:
        raise ValidationError(
            f"choose 2 to {MAX_COMPARED} different models to compare (got {len(chosen)})"
        )
    unknown = [m for m in chosen if m not in servable]
    if unknown:
        raise NotFound(f"no model variant named {unknown[0]!r}")
    return chosen


def compare_replies(
    chat: ChatFn,
    conversations: Mapping[str, list[dict[str, str]]],
    sampling: Sampling,
    system_prompt: str = "",
) -> Iterator[dict[str, str]]:
    """Each model's reply to the last user turn of its own conversation (model -> its turns so
    far), with the same sampling and system prompt, streamed side by side: yields every
    model's reply text so far whenever one grows. A model that fails gets its reason in its
    reply, marked as an error; the others go on. Without a seed, one is drawn for all, so
    the models sample alike and a rerun with that seed gives the same answers."""
    if sampling.seed is None:
        sampling = replace(sampling, seed=random.randrange(2**31))
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    replies = dict.fromkeys(conversations, "")

    def opener(model: str) -> Callable[[], Iterable[str]]:
        return lambda: chat(model, system + conversations[model], sampling)

    with closing(stream_together({model: opener(model) for model in conversations})) as events:
        for event in events:
            if event.piece is not None:
                replies[event.key] += event.piece
            elif event.error is not None:
                replies[event.key] += f"\n[error: {event.error}]"
            else:
                continue
            yield dict(replies)
