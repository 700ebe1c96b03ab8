"""The Evaluate tab in a real browser against the real app (echo backend: this is about the
page, the plumbing is tested in tests/ui/test_evaluate_live.py and the real backend in
tests/evaluation/test_run_on_vllm.py): an admin picks contestants, uploads examples, starts a
run, watches it finish in the runs table, reads the report, opens an example side by side
(model text shown as text) and gets the results as a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.arena.conftest import running_arena_app
from tests.e2e.browser import expect, shot
from tests.helpers import write_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(tmp_path_factory, models_dir: Path):
    with running_arena_app(tmp_path_factory.mktemp("evaluate-e2e") / "home", models_dir) as live:
        yield live


def pick(page, elem_id: str, names: list[str]) -> None:
    """Type names into a multiselect dropdown that takes any value."""
    field = page.locator(f"#{elem_id} input")
    for name in names:
        field.fill(name)
        field.press("Enter")


def test_an_admin_evaluates_two_contestants_and_reads_the_report(app, page, tmp_path):
    examples = write_jsonl(tmp_path / "examples.jsonl", [
        {"prompt": "alpha", "reference": "[base] alpha"},
        {"prompt": "<img src=x onerror=alert(1)>", "reference": "an image"},
    ])  # fmt: skip
    page.goto(app.url)
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#ft-e-name input, #ft-e-name textarea").first.fill("first look")
    pick(page, "ft-e-contestants", ["base", "pirate"])
    page.get_by_label("an uploaded file").check()
    page.locator("#ft-e-file input[type=file]").set_input_files(str(examples))
    expect(page.locator("#ft-e-file")).to_contain_text("examples")  # name and extension apart
    shot(page, "40-evaluate-new-run")
    page.locator("#ft-e-start").click()
    expect(page.locator("#ft-e-message")).to_contain_text("Started first look")
    # The runs table refreshes by itself until the run is scored.
    expect(page.locator("#ft-e-runs")).to_contain_text("done", timeout=90_000)
    page.locator("#ft-e-show").click()
    expect(page.locator("#ft-e-summary")).to_contain_text("baseline base")
    expect(page.locator("#ft-e-report")).to_contain_text("exact_match")
    shot(page, "41-evaluate-report")
    page.locator("#ft-e-position input").fill("2")
    page.locator("#ft-e-example").click()
    view = page.locator("#ft-e-example-view")
    expect(view).to_contain_text("<img src=x onerror=alert(1)>")
    shot(page, "42-evaluate-example", view)
    page.get_by_role("button", name="Results (CSV)").click()
    expect(page.locator("#ft-e-download")).to_contain_text("first_look-results")
    assert not page.dialogs and not page.errors
