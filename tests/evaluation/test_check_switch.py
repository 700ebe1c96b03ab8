"""The switch for checks that run an admin's code (Settings.code_checks, FTAPP_CODE_CHECKS=1),
with real subprocesses: such checks are refused when a run is created with the switch off, a
run created while it was on runs none of them once it is off (the rest of the run is scored),
the ready PEP 8 check works either way, and whatever does run gets a minimal environment with
none of the app's keys or tokens."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ftapp.errors import ValidationError
from ftapp.evaluation.checks import CheckItem, CheckSpec, run_check
from ftapp.evaluation.runs import create_run
from ftapp.records import RunStatus
from ftapp.store import evaluation as store
from tests.evaluation.conftest import generate_all, say_prompts
from tests.helpers import table_counts, write_jsonl

PY = shlex.quote(sys.executable)
NAMES = ["FTAPP_JUDGE_API_KEY", "HF_TOKEN", "FTAPP_SOMETHING", "OPENAI_API_KEY",
         "HUGGINGFACE_HUB_TOKEN", "MY_SECRET", "DEPLOY_KEY"]  # fmt: skip
SECRETS = {name: f"leaked-{name.lower()}" for name in NAMES}
CHILD_ENV = {"HOME", "LANG", "LC_ALL", "PATH", "PYTHONIOENCODING", "TMPDIR"}


def _run(services, name: str, specs: list[dict], code_checks: bool):
    with services.db() as db:
        return create_run(db, services.served_base, name=name, prompts=say_prompts(2),
                          source="test prompts", contestants=["base", "concise"],
                          check_specs=specs, code_checks=code_checks, user="admin")  # fmt: skip


def _marking_checks(tmp_path: Path, tag: str) -> list[dict]:
    """A command check and a Python-file check, each leaving a file behind when it runs."""
    check_file = tmp_path / f"marks_{tag}.py"
    check_file.write_text(
        "from pathlib import Path\n\n\ndef check(answer, reference, prompt):\n"
        f"    Path({str(tmp_path / f'python-ran-{tag}')!r}).touch()\n    return 1\n"
    )
    marker = shlex.quote(str(tmp_path / f"command-ran-{tag}"))
    return [
        {"name": "pep8", "kind": "pep8"},
        {"name": "marks", "kind": "command", "command": f"touch {marker}"},
        {"name": "marks_py", "kind": "python", "path": str(check_file)},
    ]


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "shell", "kind": "command", "command": "sh -c 'echo 1'"},
        {"name": "mine", "kind": "python", "path": "/anything.py"},  # refused before it is read
    ],
)
def test_code_checks_are_refused_at_creation_when_off(eval_services, spec):
    with eval_services.db() as db:
        before = table_counts(db)
    with pytest.raises(ValidationError) as refused:
        _run(eval_services, "off", [{"name": "pep8", "kind": "pep8"}, spec], code_checks=False)
    message = str(refused.value)
    assert f"check {spec['name']!r}" in message
    assert "command and Python-file checks are off in this installation" in message
    assert "FTAPP_CODE_CHECKS=1" in message and "never in demo mode or on a Space" in message
    with eval_services.db() as db:
        assert table_counts(db) == before
    # The ready checks need no switch.
    assert _run(eval_services, "pep8 only", [{"name": "pep8", "kind": "pep8"}], False).id


def test_a_run_created_with_code_checks_on_runs_none_once_they_are_off(eval_services, tmp_path):
    run = _run(eval_services, "made while on", _marking_checks(tmp_path, "off"), True)
    generate_all(eval_services)  # the installation restarted with the switch off
    with eval_services.db() as db:
        assert store.get_run(db, run.id).status == RunStatus.DONE
        answers = store.run_answers(db, run.id)
    assert not (tmp_path / "command-ran-off").exists()
    assert not (tmp_path / "python-ran-off").exists()
    for answer in answers:
        for name in ("marks", "marks_py"):
            assert answer["scores"][name] is None
            assert answer["details"][name].startswith("not run: command and Python-file checks")
            assert "FTAPP_CODE_CHECKS=1" in answer["details"][name]
        # The rest of the run is scored as usual, the ready PEP 8 check included.
        assert answer["scores"]["pep8"] is not None and answer["details"]["pep8"]
        assert answer["scores"]["exact_match"] in (0.0, 1.0)

    # The same checks do run where the switch is on: the files above were theirs to write.
    run = _run(eval_services, "scored while on", _marking_checks(tmp_path, "on"), True)
    allowed = dataclasses.replace(eval_services.settings, code_checks=True)
    generate_all(eval_services, settings=allowed)
    assert (tmp_path / "command-ran-on").exists() and (tmp_path / "python-ran-on").exists()
    with eval_services.db() as db:
        assert {a["scores"]["marks_py"] for a in store.run_answers(db, run.id)} == {1.0}


def test_the_pep8_check_runs_with_code_checks_off() -> None:
    pep8 = CheckSpec("pep8", "pep8")
    (result,) = run_check(pep8, [CheckItem("x=1\n", None, "")], code_checks=False)
    assert result.score == 0.0 and "E225" in result.detail


def test_command_checks_get_a_minimal_environment(monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    script = "import os; print(' '.join(sorted(os.environ))); print(os.environ['HOME'])"
    spec = CheckSpec("env", "command", command=f"{PY} -c {shlex.quote(script)}")
    (result,) = run_check(spec, [CheckItem("answer", None, "")], code_checks=True)
    names, home = result.detail.splitlines()
    assert set(names.split()) == CHILD_ENV
    assert not set(SECRETS) & set(names.split())
    assert not any(value in result.detail for value in SECRETS.values())
    # HOME is a fresh folder of its own, gone once the check is done.
    assert home != os.environ.get("HOME") and not Path(home).exists()


def test_python_checks_get_a_minimal_environment(monkeypatch, tmp_path: Path) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    check_file = tmp_path / "env_check.py"
    check_file.write_text(
        "import json, os\n\n\ndef check(answer, reference, prompt):\n"
        f"    with open({str(tmp_path / 'env.json')!r}, 'w') as out:\n"
        "        json.dump(dict(os.environ), out)\n    return 1\n"
    )
    spec = CheckSpec("env", "python", path=str(check_file))
    assert run_check(spec, [CheckItem("a", None, "")], code_checks=True)[0].score == 1.0
    env = json.loads((tmp_path / "env.json").read_text())
    assert set(env) == CHILD_ENV and env["HOME"] == env["TMPDIR"]
    # The app's own Python comes first on PATH: `python` there is the venv's.
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_a_run_made_from_a_terminal_keeps_its_python_check(eval_services, env, tmp_path):
    """`ftapp eval run --check-python FILE` copies the file into FTAPP_HOME/checks (as the
    Evaluate tab does with an upload): the run is scored with it after the original is gone."""
    rows = [{"prompt": f"Say: word{i}", "reference": f"word{i}"} for i in range(2)]
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    check_file = tmp_path / "says_word.py"
    check_file.write_text("def check(answer, reference, prompt):\n    return 'word' in answer\n")
    cli = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "eval", "run", "from the terminal", "--contestants",
         "base,concise", "--prompts", str(prompts), "--check-python", str(check_file),
         "--no-wait"],
        env={**env, "FTAPP_BACKEND": "echo", "FTAPP_CODE_CHECKS": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    check_file.unlink()  # the file the run was made with is gone before it is scored

    allowed = dataclasses.replace(eval_services.settings, code_checks=True)
    generate_all(eval_services, settings=allowed)
    with eval_services.db() as db:
        run = store.get_run(db, "from the terminal")
        scores = {a["contestant"]: a["scores"]["says_word"] for a in store.run_answers(db, run.id)}
    assert run.status == RunStatus.DONE, run.error
    kept = Path(run.checks["checks"][0]["path"])
    assert kept.parent == eval_services.settings.home / "checks" and kept.is_file()
    # The plain base model says it doesn't know; the prompted one says the word.
    assert scores == {"base": 0.0, "concise": 1.0}
