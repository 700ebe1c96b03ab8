"""The suite's markers hold what `make test-fast` relies on: every test that drives a browser
carries `e2e`, so `-m "not ... e2e"` never starts Chromium. The suite is collected in a child
pytest (nothing runs), and each test is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.live_app import REPO

# Runs in the child: collect the suite and write, for each test, whether it drives a browser
# and whether it is marked e2e. A test drives a browser if its module uses Playwright (or the
# shared browser helpers), or if any fixture it uses does (the `page` fixture, a module's own
# `browser`). This file names Playwright itself, so it is left out.
AUDIT = """
import inspect, json, sys
from pathlib import Path
import pytest

NEEDLES = ("playwright", "tests.e2e.browser")
SELF = Path(sys.argv[2]).resolve()

def mentions_browser(text):
    return any(needle in text for needle in NEEDLES)

def source_of(function):
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""

class Audit:
    def pytest_collection_finish(self, session):
        rows, modules = [], {}
        for item in session.items:
            path = Path(item.path).resolve()
            if path == SELF:
                continue
            if path not in modules:
                modules[path] = mentions_browser(path.read_text(encoding="utf-8"))
            fixtures = [definition.func for name in item.fixturenames
                        for definition in item._fixtureinfo.name2fixturedefs.get(name, ())]
            uses_browser = modules[path] or any(mentions_browser(source_of(f)) for f in fixtures)
            rows.append({"id": item.nodeid, "browser": uses_browser,
                         "e2e": item.get_closest_marker("e2e") is not None})
        Path(sys.argv[1]).write_text(json.dumps(rows))

args = ["--collect-only", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
        "tests"]
sys.exit(pytest.main(args, plugins=[Audit()]))
"""


def test_every_browser_test_is_marked_e2e(tmp_path: Path):
    report = tmp_path / "items.json"
    result = subprocess.run(
        [sys.executable, "-c", AUDIT, str(report), __file__],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    rows = json.loads(report.read_text())
    browser_tests = [row for row in rows if row["browser"]]
    assert len(browser_tests) >= 10, browser_tests  # the audit found the browser tests at all
    unmarked = [row["id"] for row in browser_tests if not row["e2e"]]
    assert not unmarked, f"browser tests without the e2e marker: {unmarked}"
    assert result.returncode == 0, f"the suite did not collect cleanly:\n{result.stdout[-3000:]}"
