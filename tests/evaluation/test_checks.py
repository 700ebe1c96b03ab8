"""User-defined checks run for real: Python check files in a child process (errors, bad
returns, a hang, a broken file), command checks on stdin and on a file, the PEP 8 check
through flake8, and the validation of check specs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.evaluation.checks import (
    READY_CHECKS,
    CheckItem,
    CheckResult,
    CheckSpec,
    parse_check,
    python_code,
    run_check,
)

PY = shlex.quote(sys.executable)

CHECK_FILE = """
import os
import sys
import time


def check(answer, reference, prompt):
    # Beside this file: the check's environment holds nothing of the test's.
    with open(os.path.join(os.path.dirname(__file__), "pids.log"), "a") as log:
        log.write(f"{os.getpid()}\\n")
    print("chatter on stdout must not break the protocol")
    if answer == "boom":
        raise ValueError("cannot score boom")
    if answer == "seven":
        return 7
    if answer == "yes":
        return True
    if answer == "word":
        return "high"
    if answer == "stdin":
        # The runner hands the check /dev/null: the other answers stay out of its reach.
        return sys.stdin.read() == ""
    if answer == "hang":
        while True:
            time.sleep(0.05)
    if prompt == "compare":
        return answer == reference
    return len(answer) / 10
"""


def items(*answers: str, reference: str | None = None, prompt: str = "") -> list[CheckItem]:
    return [CheckItem(answer, reference, prompt) for answer in answers]


@pytest.fixture
def check_file(tmp_path: Path) -> Path:
    path = tmp_path / "length_check.py"
    path.write_text(CHECK_FILE)
    return path


def run_code_check(spec: CheckSpec, answers: list[CheckItem]) -> list[CheckResult]:
    """run_check in an installation that allows Python-file and command checks."""
    return run_check(spec, answers, code_checks=True)


# --- python checks -----------------------------------------------------------------------


def test_python_check_scores_each_answer_in_one_child_process(check_file: Path) -> None:
    spec = parse_check({"name": "length", "kind": "python", "path": str(check_file)})
    answers = items("abcde", "stdin", "boom", "seven", "yes", "word", "", "abcdefghij")
    results = run_code_check(spec, answers)
    assert results == [
        CheckResult(0.5, ""),  # 5 characters / 10
        CheckResult(1.0, ""),
        CheckResult(None, "ValueError: cannot score boom"),
        CheckResult(None, "check returned 7, outside 0..1"),
        CheckResult(1.0, ""),  # True counts as 1
        CheckResult(None, "check returned str 'high', not a number 0..1"),
        CheckResult(0.0, ""),
        CheckResult(1.0, ""),
    ]
    # One child for the whole call, never the test's own process.
    pids = set((check_file.parent / "pids.log").read_text().split())
    assert len(pids) == 1 and pids != {str(os.getpid())}
    assert "length_check" not in " ".join(sys.modules)


def test_python_check_gets_reference_and_prompt(check_file: Path) -> None:
    spec = CheckSpec("same", "python", path=str(check_file))
    same = [CheckItem("Paris", "Paris", "compare"), CheckItem("Lyon", "Paris", "compare")]
    assert [r.score for r in run_code_check(spec, same)] == [1.0, 0.0]


def test_a_hanging_python_check_times_out_and_keeps_finished_answers(check_file: Path) -> None:
    spec = CheckSpec("length", "python", path=str(check_file), timeout_s=0.5)
    results = run_code_check(spec, items("abc", "hang", "abcd"))
    assert results[0] == CheckResult(0.3, "")
    assert [r.score for r in results[1:]] == [None, None]
    assert all(r.detail.startswith("timed out") for r in results[1:])
    assert "1.5 s" in results[1].detail  # 0.5 s an answer, 3 answers


def test_a_python_check_that_does_not_load_fails_every_answer(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def check(answer, reference, prompt):\n    return (\n")
    results = run_code_check(CheckSpec("broken", "python", path=str(broken)), items("a", "b"))
    assert [r.score for r in results] == [None, None]
    assert results[0].detail.startswith(f"cannot load {broken}: SyntaxError")
    assert results[0] == results[1]


def test_parse_check_refuses_bad_python_checks(tmp_path: Path) -> None:
    text_file = tmp_path / "check.txt"
    text_file.write_text("def check(a, r, p): return 1\n")
    no_check = tmp_path / "helpers.py"
    no_check.write_text("def score(answer):\n    return 1\n\nclass X:\n    def check(self): ...\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def check(:\n")
    cases = {
        str(tmp_path / "missing.py"): "check 'mine': no such file .*missing.py",
        str(text_file): "check 'mine': .*check.txt is not a .py file",
        str(no_check): "check 'mine': .*helpers.py defines no top-level check",
        str(broken): "check 'mine': .*broken.py line 1: ",
    }
    for path, message in cases.items():
        with pytest.raises(ValidationError, match=message):
            parse_check({"name": "mine", "kind": "python", "path": path})


def test_parse_check_accepts_and_round_trips(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "ok.py").write_text("from helpers import check\n")
    monkeypatch.chdir(tmp_path)
    spec = parse_check({"name": "ok-1", "kind": "python", "path": "ok.py", "timeout_s": 5})
    assert spec == CheckSpec("ok-1", "python", path=str(tmp_path / "ok.py"), timeout_s=5.0)
    assert CheckSpec.from_dict(spec.to_dict()) == spec
    pep8 = READY_CHECKS["pep8"]
    assert CheckSpec.from_dict(pep8.to_dict()) == pep8 == CheckSpec("pep8", "pep8")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "kind": "command", "command": "no-such-program-ftapp --fast"},
         "check 'x': program 'no-such-program-ftapp' not found"),
        ({"name": "x", "kind": "command", "command": "python -c 'unclosed"},
         "check 'x': command .*: No closing quotation"),
        ({"name": "x", "kind": "command", "command": "  "}, "check 'x': a command check needs"),
        ({"name": "bad name", "kind": "pep8"}, "check name 'bad name': use 1 to 40 letters"),
        ({"name": "x", "kind": "shell"}, "check 'x': kind must be one of python, command, pep8"),
        ({"name": "x", "kind": "pep8", "timeout_s": 0}, "check 'x': timeout_s must be more"),
        ({"name": "x", "kind": "pep8", "input": "argv"}, "check 'x': input must be one of"),
        ({"name": "x", "kind": "pep8", "cmd": "ls"}, "check 'x': unknown field 'cmd'"),
    ],
)  # fmt: skip
def test_parse_check_refuses_bad_specs(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_check(data)


# --- command checks ----------------------------------------------------------------------


def test_command_check_reads_the_answer_on_stdin() -> None:
    command = f"{PY} -c 'import sys; print(len(sys.stdin.read()) / 10)'"
    spec = parse_check({"name": "length", "kind": "command", "command": command})
    # "éèà" is 3 characters: the answer arrives as UTF-8 text.
    assert run_code_check(spec, items("abcde", "éèà", "")) == [
        CheckResult(0.5, "0.5"), CheckResult(0.3, "0.3"), CheckResult(0.0, "0.0"),
    ]  # fmt: skip


def test_command_check_reads_the_answer_from_a_file() -> None:
    script = 'import sys; print(open(sys.argv[1]).read().count("x") / 4)'
    with_placeholder = f"{PY} -c '{script}' {{file}}"
    appended = f"{PY} -c '{script}'"
    for command in (with_placeholder, appended):
        spec = CheckSpec("xs", "command", command=command, input="file")
        results = run_code_check(spec, items("xx..", "xxxx", "...."))
        assert [r.score for r in results] == [0.5, 1.0, 0.0]


def test_command_check_falls_back_on_the_exit_status() -> None:
    script = (
        "import sys; text = sys.stdin.read(); print('checked', len(text), 'chars'); "
        "print('7'); print('problem here', file=sys.stderr); sys.exit(0 if 'ok' in text else 3)"
    )
    spec = CheckSpec("status", "command", command=f"{PY} -c {shlex.quote(script)}")
    # The last line "7" is a number but not in 0..1, so the exit status decides.
    assert run_code_check(spec, items("ok then", "bad")) == [
        CheckResult(1.0, "checked 7 chars\n7\nproblem here"),
        CheckResult(0.0, "checked 3 chars\n7\nproblem here"),
    ]


def test_command_check_times_out_per_answer() -> None:
    script = "import sys, time; time.sleep(60 if 'slow' in sys.stdin.read() else 0)"
    spec = CheckSpec("slow", "command", command=f"{PY} -c {shlex.quote(script)}", timeout_s=0.5)
    assert run_code_check(spec, items("slow", "fast")) == [
        CheckResult(None, "timed out after 0.5 s"),
        CheckResult(1.0, ""),
    ]


# --- the PEP 8 check ---------------------------------------------------------------------

CLEAN = "import os\n\n\ndef home():\n    return os.environ['HOME']\n"
# Line 2 has E225 (no spaces around =); line 3 E225 and W291 (trailing whitespace): 2 of 4
# non-empty lines have a violation, so the score is 1 - 2/4 = 0.5.
TWO_BAD_LINES = "import os\nx=1\ny=2  \nprint(os.sep, x, y)\n"


def test_pep8_scores_answers_in_order() -> None:
    prose = (
        "Here is the function you asked for:\n\n```python\n" + CLEAN + "```\n\n"
        "It returns the home folder. Let me know!"
    )
    answers = items(CLEAN, TWO_BAD_LINES, "def f(:\n    pass\n", prose, "", CLEAN)
    assert run_check(READY_CHECKS["pep8"], answers) == [
        CheckResult(1.0, "clean"),
        CheckResult(0.5, "E225 x2, W291 x1"),
        CheckResult(0.0, "E999 SyntaxError: invalid syntax"),
        CheckResult(1.0, "clean"),  # only the fenced block is checked, not the prose
        CheckResult(0.0, "no code"),
        CheckResult(1.0, "clean"),
    ]
    assert run_check(READY_CHECKS["pep8"], items("", "```python\n\n```")) == [
        CheckResult(0.0, "no code"), CheckResult(0.0, "no code"),
    ]  # fmt: skip
    assert run_check(READY_CHECKS["pep8"], []) == []


def test_pep8_counts_a_long_line_at_79_characters() -> None:
    # One line of 80 characters (E501 at PEP 8's 79) out of 2 non-empty lines: 1 - 1/2.
    long_line = "x = '" + "a" * 74 + "'\n"
    assert len(long_line.rstrip("\n")) == 80
    (result,) = run_check(READY_CHECKS["pep8"], items("y = 1\n" + long_line))
    assert result == CheckResult(0.5, "E501 x1")


def test_python_code_picks_the_block() -> None:
    assert python_code("```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1\n"
    assert python_code("Text\n```\n\n\nz = 3\n\n```\n") == "z = 3\n"  # bare block, trimmed
    assert python_code("```js\nlet a\n```\n```\nb = 1\n```") == "b = 1\n"
    assert python_code("1. Code:\n   ```python\n   a = 1\n   if a:\n       pass\n   ```") == (
        "a = 1\nif a:\n    pass\n"
    )
    assert python_code("w = 4") == "w = 4\n"
    assert python_code("  \n\n") == ""
