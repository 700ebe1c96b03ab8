"""The child process that runs a user's Python check, so the app never imports user code:
`python -m ftapp.evaluation.check_runner CHECK.py` loads the file, reads one JSON item a line
on stdin ({"answer", "reference", "prompt"}) and writes one JSON line back per item,
{"score": x} or {"error": "..."}, flushed at once so the parent keeps the finished items if it
has to stop a slow check.

Failing to load the file prints "cannot load ..." and the traceback to stderr and exits with
status 2 before answering any item. Anything the check prints goes to stderr, not into the
answers. Only the standard library here: the child starts fast.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def score_from_value(value: Any) -> tuple[float | None, str]:
    """A check's return value as a score in 0..1, or None with the reason it isn't one.
    True and False count as 1 and 0."""
    if isinstance(value, bool):
        return float(value), ""
    if not isinstance(value, int | float):
        return None, f"check returned {type(value).__name__} {value!r:.80}, not a number 0..1"
    score = float(value)
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        return None, f"check returned {value!r}, outside 0..1"
    return score, ""


def _load_check(path: str):
    # The check's folder goes on sys.path so it can import helper modules kept beside it.
    sys.path.insert(0, str(Path(path).resolve().parent))
    spec = importlib.util.spec_from_file_location("ftapp_user_check", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check = getattr(module, "check", None)
    if not callable(check):
        raise AttributeError(f"{path} defines no check(answer, reference, prompt) function")
    return check


def _answer(check, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
        value = check(item["answer"], item.get("reference"), item.get("prompt", ""))
    except (Exception, SystemExit) as exc:  # a check calling sys.exit() fails one item
        return {"error": f"{type(exc).__name__}: {exc}"}
    score, why = score_from_value(value)
    return {"score": score} if score is not None else {"error": why}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ftapp.evaluation.check_runner CHECK.py", file=sys.stderr)
        return 2
    answers, items = sys.stdout, sys.stdin
    # The check may print or read stdin; neither may touch the protocol's streams.
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 (lives as long as the process)
    try:
        check = _load_check(argv[0])
    except BaseException as exc:  # SyntaxError, ImportError, SystemExit in the file...
        print(f"cannot load {argv[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 2
    for line in items:
        if line.strip():
            answers.write(json.dumps(_answer(check, line)) + "\n")
            answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
