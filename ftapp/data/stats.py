"""Numbers about a dataset: counts per status, split and tag, import problems, versions, for
preference data its pairs and good/bad rows, and the token-length distribution (counted with
the base model's tokenizer at import/edit). A pair's length is its longer side, the prompt with
the chosen or with the rejected answer: the one the training's max length must fit."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import sqlite_utils

from ftapp.records import DatasetKind
from ftapp.store import datasets as store
from ftapp.store import versions as version_store


def dataset_stats(db: sqlite_utils.Database, dataset: str) -> dict[str, Any]:
    target = store.get_dataset(db, dataset)
    by_status = dict.fromkeys(("pending", "accepted", "rejected"), 0)
    by_status.update(store.examples_per_status(db, target.id))
    by_split = dict.fromkeys(("train", "validation", "test", "none"), 0)
    by_split.update(store.examples_per_split(db, target.id))
    by_tag = store.examples_per_tag(db, target.id)
    imports = store.list_imports(db, target.id)
    tokens = token_lengths(db, dataset)
    return {
        "name": target.name,
        "examples": sum(by_status.values()),
        "by_status": by_status,
        "by_split": by_split,
        "by_tag": by_tag,
        "rejected_rows": sum(entry["n_rejected"] for entry in imports),
        "duplicates": sum(entry["n_duplicates"] for entry in imports),
        "imports": imports,
        "versions": [asdict(v) for v in version_store.list_versions(db, target.id)],
        "split_ratios": list(target.split_ratios) if target.split_ratios else None,
        "split_seed": target.split_seed,
        "tokens": _summary(tokens),
        "kind": target.kind.value,
        # Pairs and unpaired rows labelled good or bad (all 0 in an SFT dataset).
        "preference": store.preference_counts(db, target.id),
    }


def preference_line(stats: dict[str, Any]) -> str:
    """A preference dataset's examples in words ("pairs: 12 · good: 3 · bad: 1"), empty text
    for an SFT dataset."""
    if stats["kind"] != DatasetKind.PREFERENCE:
        return ""
    counts = stats["preference"]
    parts = [f"pairs: {counts['pairs']}"]
    parts += [f"{label}: {counts[label]}" for label in ("good", "bad") if counts[label]]
    return " · ".join(parts)


def token_lengths(db: sqlite_utils.Database, dataset: str, status: str | None = None) -> list[int]:
    target = store.get_dataset(db, dataset)
    return store.token_counts(db, target.id, status)


def token_histogram(lengths: list[int], bins: int = 20) -> list[dict[str, Any]]:
    """At most `bins` bins of whole token counts that don't overlap, each as wide as the
    others: [{"range": "60-69", "low": 60, "high": 69, "examples": n}, ...] (both ends
    included; a bin one token wide is labelled "60")."""
    if not lengths:
        return []
    smallest, largest = min(lengths), max(lengths)
    width = math.ceil((largest - smallest + 1) / bins)
    n_bins = math.ceil((largest - smallest + 1) / width)
    edges = smallest + width * np.arange(n_bins + 1)  # the last edge is past the largest
    counts, _ = np.histogram(np.asarray(lengths), bins=edges)
    result = []
    for count, low in zip(counts, edges[:-1], strict=True):
        low, high = int(low), int(low) + width - 1
        label = f"{low}-{high}" if high > low else str(low)
        result.append({"range": label, "low": low, "high": high, "examples": int(count)})
    return result


def _summary(lengths: list[int]) -> dict[str, Any] | None:
    if not lengths:
        return None
    values = np.asarray(lengths)
    return {
        "min": int(values.min()),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": int(values.max()),
        "total": int(values.sum()),
    }
