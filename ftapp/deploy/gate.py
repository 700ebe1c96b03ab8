"""The promotion gate: what must be said before a model goes to production. A variant whose
drift from its base model is over the installation's limit (FTAPP_MAX_DRIFT, nats per token;
evaluation/drift.py), or that did worse than base on a canary set (a metric whose paired
interval against base is entirely on the worse side; evaluation/canary.py), is promoted only
with a reason, and the reason and what the gate saw go into the production history. A model
not measured yet is let through, and the history says it was not measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import sqlite_utils

from ftapp.evaluation.canary import canary_results
from ftapp.store import drift as drift_store


@dataclass(frozen=True)
class GateResult:
    model: str
    objections: list[str] = field(default_factory=list)  # why it needs a reason; [] to pass
    drift: dict[str, Any] | None = None  # the drift measured (mean, low, high, n), if any
    canaries: list[dict[str, Any]] = field(default_factory=list)  # per canary set: the verdicts

    @property
    def passes(self) -> bool:
        return not self.objections

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_gate(db: sqlite_utils.Database, model: str, max_drift: float) -> GateResult:
    """What the gate says of promoting `model` (the base model always passes: nothing to have
    drifted from)."""
    objections: list[str] = []
    measured = drift_store.drift_of(db, model)
    drift = None
    if measured and measured["status"] == "done":
        drift = {k: measured[k] for k in ("mean", "low", "high", "n")}
        if measured["mean"] > max_drift:
            objections.append(
                f"its drift from the base model, {measured['mean']:.3f} nats per token (95% "
                f"interval {measured['low']:.3f} to {measured['high']:.3f}), is over the limit "
                f"of {max_drift:g} (FTAPP_MAX_DRIFT)"
            )
    canaries = canary_results(db, model)
    for result in canaries:
        for worse in result["worse"]:
            objections.append(
                f"it did worse than base on the canary set {result['canary']!r}: {worse}"
            )
    return GateResult(model, objections, drift, canaries)
