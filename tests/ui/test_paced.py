"""`paced`: a streaming reply redraws at most ten times a second, ends on its last state,
and closing it closes the stream (so a stopped battle still saves its answers)."""

from __future__ import annotations

from ftapp.ui.common import paced


class Clock:
    """Time that moves only when the stream says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stream(clock: Clock, gaps: list[float], closed: list[bool]):
    text = ""
    try:
        for number, gap in enumerate(gaps):
            clock.now += gap
            text += chr(ord("a") + number)
            yield text
    finally:
        closed.append(True)


def test_fast_tokens_are_sent_ten_times_a_second_and_the_last_always():
    clock, closed = Clock(), []
    sent = list(paced(stream(clock, [0.03] * 20, closed), 0.1, clock))
    everything = "abcdefghijklmnopqrst"
    # At 0.03, 0.15, 0.27, 0.39, 0.51 (every fourth token), then the last one.
    assert sent == [everything[:1], everything[:5], everything[:9], everything[:13],
                    everything[:17], everything]  # fmt: skip
    assert closed == [True]


def test_slow_tokens_are_all_sent_and_nothing_twice():
    clock, closed = Clock(), []
    sent = list(paced(stream(clock, [0.5] * 4, closed), 0.1, clock))
    assert sent == ["a", "ab", "abc", "abcd"]


def test_stopping_early_closes_the_stream():
    clock, closed = Clock(), []
    updates = paced(stream(clock, [0.03] * 20, closed), 0.1, clock)
    assert next(updates) == "a"
    assert next(updates) == "abcde"
    updates.close()
    assert closed == [True]


def test_an_empty_stream_sends_nothing():
    assert list(paced(iter([]), 0.1, Clock())) == []
