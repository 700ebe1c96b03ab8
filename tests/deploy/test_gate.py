"""The promotion gate on a real database: a canary set built here regresses for "secret" (its
references are exactly what the base model answers on the echo backend, so base scores 1 on
exact match and the adapter 0, on every prompt), and "other" drifted past the limit. Promoting
either is refused, naming why, and changes nothing; with an override reason it goes through
and the history keeps the reason and what the gate saw. The same through the core, `ftapp
deploy promote` in a subprocess, and the Deploy tab's API on the running app."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from ftapp.deploy.gate import check_gate
from ftapp.deploy.production import promote, promotion_history
from ftapp.errors import Conflict, NotFound, ValidationError
from ftapp.evaluation.canary import (
    add_canary_set,
    canary_results,
    list_canary_sets,
    remove_canary_set,
    schedule_canary_runs,
)
from ftapp.names import BASE
from ftapp.store import drift as drift_store
from tests.evaluation.conftest import generate_all
from tests.helpers import table_counts, write_jsonl
from tests.live_app import running_app

PROMPTS = ["Where is the shop?", "When do you open?", "Do you sell bells?", "Can I rent a bike?"]


def regressing_canary(services, tmp_path) -> None:
    """A canary set on which base is right every time and any adapter wrong (echo answers
    "[model] prompt"), evaluated for every adapter."""
    rows = [{"prompt": p, "reference": f"[base] {p}"} for p in PROMPTS]
    prompt_file = write_jsonl(tmp_path / "must-pass.jsonl", rows)
    with services.db() as db:
        add_canary_set(db, services.settings, "must pass", prompt_file=prompt_file, user="ana")
    prompt_file.unlink()  # kept in FTAPP_HOME: the runs don't need the original
    with services.db() as db:
        made = schedule_canary_runs(db, services.served_base, services.settings)
    assert sorted(adapter for _, adapter in made) == ["other", "secret"]
    generate_all(services, services.stream_chat)


def too_much_drift(services) -> None:
    with services.db() as db:
        probe_set = drift_store.insert_probe_set(
            db, services.served_base.name, [([{"role": "user", "content": "Hi"}], "chat")],
            [{"name": BASE, "model": BASE, "system_prompt": ""}], {"temperature": 0.0},
        )  # fmt: skip
        drift_store.save_drift(db, {"variant": "other", "adapter_path": "x", "set_id": probe_set,
                                    "status": "done", "mean": 0.9, "low": 0.8, "high": 1.0,
                                    "n": 1, "values_json": "[0.9]"})  # fmt: skip


def test_a_regressing_canary_and_too_much_drift_need_a_recorded_reason(stand_in, tmp_path):
    services, base = stand_in, stand_in.served_base
    regressing_canary(services, tmp_path)
    too_much_drift(services)
    with services.db() as db:
        (secret_result,) = canary_results(db, "secret")
        assert secret_result["status"] == "done"
        assert secret_result["worse"][0].startswith("Exact match vs base -1")
        gate = check_gate(db, "secret", max_drift=0.5)
        assert not gate.passes and "canary set 'must pass'" in gate.objections[0]
        other = check_gate(db, "other", max_drift=0.5)
        assert any("drift from the base model, 0.900 nats per token" in o
                   for o in other.objections)  # fmt: skip
        assert check_gate(db, "other", max_drift=1.5).objections == other.objections[1:]
        before = table_counts(db)
        for model in ("secret", "other"):
            with pytest.raises(Conflict, match=f"promoting '{model}' needs a reason"):
                promote(db, base, model, "ana", max_drift=0.5)
        assert table_counts(db) == before  # refused: nothing written

        promoted = promote(db, base, "secret", "ana", "ship it",
                           override_reason="the canary's references are out of date",
                           max_drift=0.5)  # fmt: skip
        assert promoted.override_reason == "the canary's references are out of date"
        seen = json.loads(promoted.gate_json)
        assert seen["model"] == "secret" and seen["canaries"][0]["worse"]
        # Base has nothing to drift from: it always passes, and no reason is kept.
        assert promote(db, base, BASE, "ana", override_reason="ignored").override_reason is None
        assert [p.override_reason for p in promotion_history(db)][:2] == [
            None, "the canary's references are out of date"]  # fmt: skip


def test_canary_sets_are_checked_before_anything_is_written(stand_in, tmp_path):
    services = stand_in
    with services.db() as db:
        before = table_counts(db)
        with pytest.raises(ValidationError, match="either a dataset version or a prompt file"):
            add_canary_set(db, services.settings, "none", user="ana")
        with pytest.raises(ValidationError, match="name a canary set"):
            add_canary_set(db, services.settings, "no/slash", prompt_file="x", user="ana")
        broken = tmp_path / "broken.jsonl"
        broken.write_text('{"prompt": "fine"}\n{"prompt": \n')
        with pytest.raises(ValidationError, match="line 2"):
            add_canary_set(db, services.settings, "broken", prompt_file=broken, user="ana")
        with pytest.raises(NotFound):
            add_canary_set(db, services.settings, "gone", version="nope@v1", user="ana")
        assert table_counts(db) == before
        good = write_jsonl(tmp_path / "good.jsonl", [{"prompt": "hi"}])
        add_canary_set(db, services.settings, "good", prompt_file=good, user="ana")
        with pytest.raises(Conflict, match="a canary set named 'good' exists"):
            add_canary_set(db, services.settings, "good", prompt_file=good, user="ana")
        assert [c["name"] for c in list_canary_sets(db)] == ["good"]
        remove_canary_set(db, "good")
        assert list_canary_sets(db) == []
        with pytest.raises(NotFound):
            remove_canary_set(db, "good")


def ftapp(env, *args):
    return subprocess.run([sys.executable, "-m", "ftapp.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_cli_refuses_then_records_the_override(stand_in, tmp_path):
    services = stand_in
    regressing_canary(services, tmp_path)
    env = {**os.environ, "FTAPP_HOME": str(services.settings.home), "FTAPP_BACKEND": "echo",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    refused = ftapp(env, "deploy", "promote", "secret")
    assert refused.returncode == 2
    assert "needs a reason" in refused.stderr and "must pass" in refused.stderr
    done = ftapp(env, "deploy", "promote", "secret", "--override", "a known false alarm")
    assert done.returncode == 0, done.stderr
    listed = ftapp(env, "eval", "canary", "list", "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["must pass"]
    with services.db() as db:
        latest = promotion_history(db)[0]
    assert (latest.model, latest.override_reason) == ("secret", "a known false alarm")


@pytest.mark.slow
def test_the_deploy_tab_says_what_the_gate_sees_and_records_the_override(
    stand_in, tmp_path, models_dir
):
    services = stand_in
    regressing_canary(services, tmp_path)
    with running_app(services.settings.home, models_dir, {"FTAPP_BACKEND": "echo",
                                                          "FTAPP_WORKER": "0"}) as app:  # fmt: skip
        client = Client(app.url, verbose=False)
        said = client.predict("secret", api_name="/deploy_gate")
        assert "Promoting it needs an override reason" in said and "must pass" in said
        with pytest.raises(AppError, match="needs a reason"):
            client.predict("secret", "", "", api_name="/deploy_promote")
        assert app.query("SELECT COUNT(*) AS n FROM promotions")[0]["n"] == 0
        outcome, *_ = client.predict("secret", "", "stale references",
                                     api_name="/deploy_promote")  # fmt: skip
        assert "overridden" in outcome
        assert app.query("SELECT model, override_reason FROM promotions") == [
            {"model": "secret", "override_reason": "stale references"}
        ]
