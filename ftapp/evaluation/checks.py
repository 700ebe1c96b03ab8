"""User-defined checks of an evaluation: a Python file with a `check` function, any command
line, or the ready-made PEP 8 check, each scoring answers 0..1 (or None with the reason an
answer could not be scored).

User code never runs in the app's process: a Python check runs in one child process per call
(see check_runner.py), a command in one process per answer, the PEP 8 check as one flake8
process over all answers. Every child gets a time limit and is killed with its whole process
group when it runs past it, and a minimal environment: none of the app's tokens or keys.
Python-file and command checks run an admin's code, so they run only where the installation
turns them on (FTAPP_CODE_CHECKS=1, `Settings.code_checks`); the ready checks always run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ftapp.errors import ValidationError
from ftapp.evaluation.check_runner import score_from_value
from ftapp.evaluation.metrics import fenced_block
from ftapp.processes import signal_group

CheckKind = Literal["python", "command", "pep8"]
CheckInput = Literal["stdin", "file"]
KINDS: tuple[str, ...] = ("python", "command", "pep8")
CODE_KINDS: tuple[str, ...] = ("python", "command")  # the kinds that run an admin's code
CODE_CHECKS_OFF = (
    "command and Python-file checks are off in this installation: set FTAPP_CODE_CHECKS=1 to "
    "allow them (never in demo mode or on a Space)"
)
INPUTS: tuple[str, ...] = ("stdin", "file")
MAX_TIMEOUT_S = 3600.0
DETAIL_CHARS = 300
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
# One violation a line, fields split on "|" (a path we chose never holds one).
_FLAKE8_FORMAT = "%(path)s|%(row)d|%(code)s|%(text)s"


@dataclass(frozen=True)
class CheckItem:
    answer: str
    reference: str | None
    prompt: str


@dataclass(frozen=True)
class CheckResult:
    score: float | None  # 0..1; None: the answer could not be scored, `detail` says why
    detail: str


@dataclass(frozen=True)
class CheckSpec:
    """One check: `path` for kind "python", `command` for kind "command" (where "{file}"
    stands for the answer written to a file when input is "file"), nothing more for "pep8".
    `timeout_s` is per answer. Build it with `parse_check` (or `from_dict`), which validates."""

    name: str
    kind: CheckKind
    path: str | None = None
    command: str | None = None
    input: CheckInput = "stdin"
    timeout_s: float = 30.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckSpec:
        return parse_check(data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The checks that work out of the box, offered by name in the UI.
READY_CHECKS: dict[str, CheckSpec] = {"pep8": CheckSpec(name="pep8", kind="pep8")}


# --- validation ----------------------------------------------------------------------------


def parse_check(data: dict[str, Any]) -> CheckSpec:
    """A validated check from stored or form values; ValidationError naming the check and the
    problem otherwise. A Python file is read and parsed (never imported) to see that it defines
    `check`; its path is stored absolute, so the check runs the same from any folder."""
    if not isinstance(data, dict):
        raise ValidationError("a check is a mapping with name, kind and path or command")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(
            f"check name {name!r}: use 1 to 40 letters, digits, _ or -, like valid_sql"
        )

    def problem(text: str) -> ValidationError:
        return ValidationError(f"check {name!r}: {text}")

    known = [field.name for field in fields(CheckSpec)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise problem(f"unknown field {unknown[0]!r} (known: {', '.join(known)})")
    kind, path, command = data.get("kind"), data.get("path"), data.get("command")
    if kind not in KINDS:
        raise problem(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    input_ = data.get("input", "stdin")
    if input_ not in INPUTS:
        raise problem(f"input must be one of {', '.join(INPUTS)}; got {input_!r}")
    timeout_s = data.get("timeout_s", 30.0)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise problem(f"timeout_s must be a number of seconds; got {timeout_s!r}")
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise problem(f"timeout_s must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds")

    if kind == "python":
        if command:
            raise problem("a python check takes a path, not a command")
        path = _checked_python_file(path, problem)
    elif kind == "command":
        if path:
            raise problem("a command check takes a command, not a path")
        _checked_command(command, problem)
    elif path or command:
        raise problem("the pep8 check takes neither a path nor a command")
    return CheckSpec(name, kind, path, command, input_, float(timeout_s))


def _checked_python_file(path: Any, problem) -> str:
    if not isinstance(path, str) or not path.strip():
        raise problem("a python check needs the path of its .py file")
    file = Path(path).expanduser()
    if file.suffix != ".py":
        raise problem(f"{path} is not a .py file")
    if not file.is_file():
        raise problem(f"no such file {path}")
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except (OSError, UnicodeDecodeError) as exc:
        raise problem(f"cannot read {path}: {exc}") from None
    except SyntaxError as exc:
        raise problem(f"{path} line {exc.lineno}: {exc.msg}") from None
    if not _defines_check(tree):
        raise problem(f"{path} defines no top-level check(answer, reference, prompt) function")
    return str(file.resolve())


def _defines_check(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "check":
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "check" for target in node.targets
        ):
            return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
            (alias.asname or alias.name) == "check" for alias in node.names
        ):
            return True
    return False


def _checked_command(command: Any, problem) -> None:
    if not isinstance(command, str) or not command.strip():
        raise problem("a command check needs a command line")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise problem(f"command {command!r}: {exc}") from None
    if shutil.which(argv[0]) is None:
        raise problem(f"program {argv[0]!r} not found (not on PATH, or not executable)")


def refuse_code_checks(specs: list[Any], code_checks: bool) -> None:
    """ValidationError for the first check that would run an admin's code, unless the
    installation allows such checks; looked at before anything else about the check."""
    if code_checks:
        return
    for spec in specs:
        if isinstance(spec, dict) and spec.get("kind") in CODE_KINDS:
            raise ValidationError(f"check {spec.get('name')!r}: {CODE_CHECKS_OFF}")


# --- running -------------------------------------------------------------------------------


def run_check(
    spec: CheckSpec, items: list[CheckItem], *, code_checks: bool = False
) -> list[CheckResult]:
    """One result per item, in the items' order. A Python-file or command check runs only when
    `code_checks` is on (the installation's switch now, not when the run was created); else
    each item's result says why it was not run."""
    if not items:
        return []
    if spec.kind in CODE_KINDS and not code_checks:
        return [CheckResult(None, f"not run: {CODE_CHECKS_OFF}")] * len(items)
    if spec.kind == "python":
        return _run_python(spec, items)
    if spec.kind == "command":
        return [_run_command(spec, item) for item in items]
    if spec.kind == "pep8":
        return _run_pep8(spec, items)
    raise ValidationError(f"check {spec.name!r}: unknown kind {spec.kind!r}")


@dataclass(frozen=True)
class _Finished:
    stdout: str
    stderr: str
    returncode: int | None  # None: killed at the time limit


def _run(argv: list[str], stdin: str, timeout_s: float, cwd: str | None = None) -> _Finished:
    with tempfile.TemporaryDirectory(
        prefix="ftapp-check-home-", ignore_cleanup_errors=True
    ) as home:
        # A session of its own, so the time limit kills whatever the check started too.
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", cwd=cwd, start_new_session=True,
            env=_child_env(home),
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(stdin, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            return _Finished(stdout, stderr, None)
    return _Finished(stdout, stderr, proc.returncode)


def _child_env(home: str) -> dict[str, str]:
    """What a program needs and nothing of the app's: its environment holds API keys and
    tokens (FTAPP_JUDGE_API_KEY, HF_TOKEN...) that an admin's command must never see. The
    venv's bin comes first on PATH, so `python` there is the app's Python."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    return {"PATH": path, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8"}  # fmt: skip


def _first_lines(text: str, n: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[:n])[:DETAIL_CHARS]


def _run_python(spec: CheckSpec, items: list[CheckItem]) -> list[CheckResult]:
    if not spec.path:
        raise ValidationError(f"check {spec.name!r}: a python check needs a path")
    limit_s = spec.timeout_s * len(items)
    lines = "".join(
        json.dumps({"answer": item.answer, "reference": item.reference, "prompt": item.prompt})
        + "\n"
        for item in items
    )
    argv = [sys.executable, "-m", "ftapp.evaluation.check_runner", spec.path]
    run = _run(argv, lines, limit_s)
    results = [_python_result(line) for line in run.stdout.splitlines() if line.strip()]
    results = results[: len(items)]
    if len(results) < len(items):
        if run.returncode is None:
            why = f"timed out: the check ran past {limit_s:g} s ({spec.timeout_s:g} s an answer)"
        else:
            why = _first_lines(run.stderr) or (
                f"the check process stopped (exit status {run.returncode}) before this answer"
            )
        results += [CheckResult(None, why)] * (len(items) - len(results))
    return results


def _python_result(line: str) -> CheckResult:
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not ("score" in reply or "error" in reply):
        return CheckResult(None, f"unreadable reply from the check process: {line[:100]!r}")
    if "error" in reply:
        return CheckResult(None, str(reply["error"])[:DETAIL_CHARS])
    score, why = score_from_value(reply["score"])
    return CheckResult(score, why)


def _run_command(spec: CheckSpec, item: CheckItem) -> CheckResult:
    if not spec.command:
        raise ValidationError(f"check {spec.name!r}: a command check needs a command")
    argv = shlex.split(spec.command)
    with tempfile.TemporaryDirectory(prefix="ftapp-check-") as folder:
        stdin = item.answer
        if spec.input == "file":
            answer_file = Path(folder) / "answer.txt"
            answer_file.write_text(item.answer, encoding="utf-8")
            if any("{file}" in arg for arg in argv):
                argv = [arg.replace("{file}", str(answer_file)) for arg in argv]
            else:
                argv = [*argv, str(answer_file)]
            stdin = ""
        try:
            run = _run(argv, stdin, spec.timeout_s)
        except OSError as exc:
            return CheckResult(None, f"cannot run {argv[0]}: {exc}")
    if run.returncode is None:
        return CheckResult(None, f"timed out after {spec.timeout_s:g} s")
    score = _score_line(run.stdout)
    if score is None:
        score = 1.0 if run.returncode == 0 else 0.0
    return CheckResult(score, (run.stdout + run.stderr).strip()[:DETAIL_CHARS])


def _score_line(stdout: str) -> float | None:
    """The last non-empty line of a command's output as a score, if it is a number in 0..1."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        score = float(lines[-1])
    except ValueError:
        return None
    return score if 0.0 <= score <= 1.0 else None  # NaN fails both comparisons


def python_code(answer: str) -> str:
    """The code of an answer: its first ```python (or ```py) block, else its first bare ```
    block, else the whole answer; without the blank lines around it, ending in a newline ("" for
    no code). Code indented as a whole (a block inside a Markdown list) is dedented."""
    code = fenced_block(answer, ("python", "py", "python3"))
    if code is None:
        code = fenced_block(answer, ("",))
    if code is None:
        code = answer
    lines = code.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0][:1] in (" ", "\t"):
        lines = textwrap.dedent("\n".join(lines)).splitlines()
    return "\n".join(lines) + "\n" if lines else ""


def _run_pep8(spec: CheckSpec, items: list[CheckItem]) -> list[CheckResult]:
    codes = [python_code(item.answer) for item in items]
    if not any(codes):
        return [CheckResult(0.0, "no code") for _ in items]
    limit_s = spec.timeout_s * len(items)
    with tempfile.TemporaryDirectory(prefix="ftapp-pep8-") as folder:
        for i, code in enumerate(codes):
            if code:
                (Path(folder) / f"answer_{i:05d}.py").write_text(code, encoding="utf-8")
        argv = [
            sys.executable, "-m", "flake8", "--isolated", f"--format={_FLAKE8_FORMAT}",
            "--max-line-length=79", ".",
        ]  # fmt: skip
        run = _run(argv, "", limit_s, cwd=folder)
    if run.returncode is None:
        failure = f"timed out: flake8 ran past {limit_s:g} s"
    elif run.returncode not in (0, 1):  # 1 means "found violations"
        failure = f"flake8 failed: {_first_lines(run.stderr or run.stdout)}"
    else:
        failure = ""
    violations: dict[int, list[tuple[int, str, str]]] = {}
    for line in run.stdout.splitlines():
        parts = line.split("|", 3)
        match = re.fullmatch(r"answer_(\d+)\.py", Path(parts[0]).name)
        if len(parts) == 4 and match and parts[1].isdigit():
            violations.setdefault(int(match.group(1)), []).append((int(parts[1]), *parts[2:]))
    results = []
    for i, code in enumerate(codes):
        if not code:
            results.append(CheckResult(0.0, "no code"))
        elif failure:
            results.append(CheckResult(None, failure))
        else:
            results.append(_pep8_result(code, violations.get(i, [])))
    return results


def _pep8_result(code: str, violations: list[tuple[int, str, str]]) -> CheckResult:
    for _, violation, text in violations:
        if violation == "E999":
            return CheckResult(0.0, f"E999 {text}"[:DETAIL_CHARS])
    code_lines = sum(1 for line in code.splitlines() if line.strip())
    bad_lines = len({row for row, _, _ in violations})
    score = min(1.0, max(0.0, 1.0 - bad_lines / code_lines))
    counts = Counter(violation for _, violation, _ in violations)
    detail = ", ".join(f"{violation} x{n}" for violation, n in sorted(counts.items()))
    return CheckResult(score, detail[:DETAIL_CHARS] or "clean")


def check_specs(ready: list[str], python_files: list[Path], commands: list[str],
                command_input: str) -> list[dict[str, Any]]:  # fmt: skip
    """The check settings of a run from the Evaluate tab's or the command line's fields: ready
    checks by name, Python check files, and NAME=COMMAND command checks."""
    specs: list[dict[str, Any]] = []
    for name in ready:
        if name not in READY_CHECKS:
            raise ValidationError(
                f"unknown ready check {name!r}; choose from {', '.join(READY_CHECKS)}"
            )
        specs.append(READY_CHECKS[name].to_dict())
    for path in python_files:
        specs.append({"name": Path(path).stem, "kind": "python", "path": str(path)})
    for text in commands:
        name, sep, command = text.partition("=")
        if not sep or not name.strip() or not command.strip():
            raise ValidationError(f"check command {text!r}: write it as NAME=COMMAND")
        specs.append({"name": name.strip(), "kind": "command", "command": command.strip(),
                      "input": command_input})  # fmt: skip
    return specs
