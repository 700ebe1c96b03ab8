"""Streams side by side (ftapp.generation.together): each runs in its own thread, so a fast one
is not held up by a slow one; a failing one says why while the others go on; closing early
closes every stream still running. The Playground's compare sends every model its own
conversation with the same sampling and one seed, and needs two to four models."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from ftapp.errors import NotFound, ValidationError
from ftapp.generation.together import (
    compare_models,
    compare_replies,
    stream_together,
)
from ftapp.serving.backend import Sampling


def words(text: str, pause: float = 0.0, closed: list | None = None):
    """The text word by word; `closed` gets (first word, words sent) when the stream ends."""
    sent = 0
    try:
        for word in text.split():
            time.sleep(pause)
            yield word + " "
            sent += 1
    finally:
        if closed is not None:
            closed.append((text.split()[0], sent))


def test_a_fast_stream_is_not_held_up_by_a_slow_one():
    gate = threading.Event()

    def slow():
        gate.wait(10)  # only once the fast side has finished
        yield "late"

    order = []
    for event in stream_together({"fast": lambda: words("one two three"), "slow": slow}):
        order.append((event.key, event.piece, event.elapsed_ms is not None))
        if event.key == "fast" and event.elapsed_ms is not None:
            gate.set()
    assert order[:4] == [("fast", "one ", False), ("fast", "two ", False),
                         ("fast", "three ", False), ("fast", None, True)]  # fmt: skip
    assert order[4:] == [("slow", "late", False), ("slow", None, True)]


def test_a_failing_stream_says_why_and_the_other_goes_on():
    def broken():
        yield "half "
        raise RuntimeError("engine fell over")

    events = list(stream_together({"ok": lambda: words("all of it"), "bad": broken}))
    bad = [e for e in events if e.key == "bad"]
    assert [(e.piece, e.error) for e in bad[:2]] == [("half ", None), (None, "engine fell over")]
    assert bad[-1].elapsed_ms is not None
    assert "".join(e.piece for e in events if e.key == "ok" and e.piece) == "all of it "


def test_closing_early_closes_every_running_stream():
    closed: list[str] = []
    starts = {k: (lambda k=k: words(f"{k} " * 200, 0.01, closed)) for k in ("a", "b")}
    with closing(stream_together(starts)) as events:
        for _ in zip(range(3), events, strict=False):
            pass
    # Both were closed long before their 200 words: none was left running on its own.
    assert sorted(first for first, _ in closed) == ["a", "b"]
    assert all(sent < 200 for _, sent in closed), closed


def test_compare_sends_each_model_its_conversation_with_one_seed():
    seen = {}

    def chat(model, messages, sampling):
        seen[model] = (messages, sampling)
        return words(f"{model} says {messages[-1]['content']}")

    conversations = {
        "base": [{"role": "user", "content": "hi"}],
        "tuned": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                  {"role": "user", "content": "again"}],
    }  # fmt: skip
    updates = list(compare_replies(chat, conversations, Sampling(temperature=0.7), "Be brief."))
    assert updates[-1] == {"base": "base says hi ", "tuned": "tuned says again "}
    assert seen["tuned"][0][0] == {"role": "system", "content": "Be brief."}
    assert seen["tuned"][0][1:] == conversations["tuned"]
    seeds = {sampling.seed for _, sampling in seen.values()}
    assert len(seeds) == 1 and None not in seeds  # drawn once, the same for both
    given = Sampling(seed=7)
    list(compare_replies(chat, conversations, given))
    assert {sampling.seed for _, sampling in seen.values()} == {7}


def test_compare_needs_two_to_four_different_known_models():
    known = ["base", "tuned", "a", "b", "c", "d", "e"]
    assert compare_models(["base", " tuned ", "base"], known) == ["base", "tuned"]
    for models in ([], ["base"], ["base", "base"], ["a", "b", "c", "d", "e"]):
        with pytest.raises(ValidationError, match="choose 2 to 4 different models"):
            compare_models(models, known)
    with pytest.raises(NotFound, match="no model variant named 'nope'"):
        compare_models(["base", "nope"], known)
