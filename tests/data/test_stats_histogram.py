"""The token-length histogram: whole-token bins that never overlap ("72-74" beside "73-75" was
what users saw), each as wide as the others, covering every example once."""

from __future__ import annotations

import random

from ftapp.data.stats import token_histogram


def test_bins_are_whole_numbers_side_by_side():
    lengths = [random.Random(seed).randint(61, 327) for seed in range(500)]
    bins = token_histogram(lengths)
    assert 1 < len(bins) <= 20
    assert sum(b["examples"] for b in bins) == len(lengths)
    assert bins[0]["low"] == min(lengths) and bins[-1]["high"] >= max(lengths)
    widths = {b["high"] - b["low"] for b in bins}
    assert len(widths) == 1  # every bin as wide as the others
    for before, after in zip(bins, bins[1:], strict=False):
        assert after["low"] == before["high"] + 1  # no overlap, no gap
    for b in bins:
        assert b["range"] == f"{b['low']}-{b['high']}"
        assert b["examples"] == sum(b["low"] <= n <= b["high"] for n in lengths)


def test_a_narrow_spread_gets_one_bin_a_length():
    bins = token_histogram([72, 73, 73, 75])
    assert [(b["range"], b["examples"]) for b in bins] == [("72", 1), ("73", 2), ("74", 0),
                                                           ("75", 1)]  # fmt: skip
    assert token_histogram([]) == []
    assert [(b["range"], b["examples"]) for b in token_histogram([9, 9])] == [("9", 2)]
