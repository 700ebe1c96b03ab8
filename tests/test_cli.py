"""The `ftapp` command in real subprocesses: the same results as the core, JSON out, clear
errors with exit status 2."""

import json
import subprocess
import sys

from tests.helpers import pc, write_jsonl


def ftapp(env, *args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_data_workflow_from_a_terminal(tmp_path, env):
    rows = [pc(f"Q{i}?", f"A{i}.") for i in range(20)] + ['{"prompt": "broken"', pc("Q0?", "A0.")]
    path = write_jsonl(tmp_path / "seed.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    out = ftapp(env, "data", "import", path, "--dataset", "seed", "--rejects-out", rejects,
                "--json")  # fmt: skip
    report = json.loads(out.stdout)
    assert report["n_imported"] == 20 and report["source_format"] == "prompt_completion"
    assert [p["line"] for p in report["problems"]] == [21]
    assert [p["line"] for p in report["duplicates"]] == [22]
    assert json.loads(rejects.read_text().splitlines()[0])["location"] == "line 21"

    listing = json.loads(ftapp(env, "data", "list", "--json").stdout)
    assert listing == [{**listing[0], "name": "seed", "examples": 20, "pending": 20}]

    assert "20 examples set to accepted" in ftapp(env, "data", "label", "seed", "--status",
                                                  "accepted").stdout  # fmt: skip
    ftapp(env, "data", "label", "seed", "--status", "rejected", "--ids", "1,2")
    assert "train: 14" in ftapp(env, "data", "split", "seed", "--ratios", "0.8,0.1,0.1").stdout
    frozen = json.loads(ftapp(env, "data", "freeze", "seed", "--json").stdout)
    assert frozen["version"] == 1 and frozen["n_examples"] == 18 and frozen["created"]

    stats = json.loads(ftapp(env, "data", "stats", "seed", "--json").stdout)
    assert stats["by_status"] == {"pending": 0, "accepted": 18, "rejected": 2}
    assert stats["rejected_rows"] == 1 and stats["duplicates"] == 1
    assert [v["version"] for v in stats["versions"]] == [1]
    assert sum(stats["by_split"][s] for s in ("train", "validation", "test")) == 18

    export = tmp_path / "train.jsonl"
    ftapp(env, "data", "export", "seed", "--out", export, "--version", "v1", "--split", "train",
          "--format", "prompt_completion")  # fmt: skip
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(exported) == 14 and set(exported[0]) == {"prompt", "completion"}


def test_errors_are_one_line_with_status_2(tmp_path, env):
    bad = write_jsonl(tmp_path / "bad.jsonl", [pc("ok", "fine"), '{"prompt": 1}'])
    result = ftapp(env, "data", "import", bad, "--dataset", "x", "--on-error", "abort", check=False)
    assert result.returncode == 2
    assert "error: bad.jsonl: 1 of 2 rows are invalid, nothing was imported" in result.stderr
    assert "line 2" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(ftapp(env, "data", "list", "--json").stdout) == []

    missing = ftapp(env, "data", "stats", "nope", check=False)
    assert missing.returncode == 2 and "no dataset named 'nope'" in missing.stderr
    traversal = ftapp(env, "data", "import", bad, "--dataset", "../../etc", check=False)
    assert traversal.returncode == 2 and "dataset name" in traversal.stderr


def test_models_commands(env):
    models = json.loads(ftapp(env, "models", "list", "--json").stdout)
    assert models[0]["name"] == "SmolLM2-135M-Instruct" and models[0]["source"] == "bundled"
    offline = ftapp(env, "models", "add", "someorg/some-model", check=False)
    assert offline.returncode == 2 and "Hugging Face Hub" in offline.stderr


def test_sessions_and_runs_list_their_answers_and_why_some_failed(home, env):
    from ftapp.arena.prompts import Prompt
    from ftapp.arena.sessions import create_session
    from ftapp.evaluation.runs import create_run
    from ftapp.serving.backend import Sampling
    from ftapp.store.answers import EVAL_ANSWERS_TABLE, SESSION_ANSWERS_TABLE, finish_answer
    from tests.arena.conftest import arena_home

    services = arena_home(home)
    prompts = [Prompt([{"role": "user", "content": "Say: hi"}], "hi")]
    with services.db() as db:
        create_session(db, services.served_base, name="s1", prompts=prompts, source="t",
                       contestants=["base", "pirate"], sampling=Sampling(), user="t")  # fmt: skip
        create_run(db, services.served_base, name="r1", prompts=prompts, source="t",
                   contestants=["base", "concise"], user="t")  # fmt: skip
        finish_answer(db, SESSION_ANSWERS_TABLE, 1, status="failed", error="engine down")
        finish_answer(db, EVAL_ANSWERS_TABLE, 1, status="done", answer="hi", latency_ms=5)
    sessions = ftapp(env, "arena", "sessions").stdout.splitlines()
    assert sessions[0].split() == ["s1", "generating", "answers", "0/2", "(1", "failed)", "0",
                                   "votes", "base,", "pirate"]  # fmt: skip
    assert sessions[1:] == ["    failed: engine down"]
    runs = ftapp(env, "eval", "runs").stdout.splitlines()
    assert runs[0].split() == ["r1", "generating", "answers", "1/2", "(0", "failed)", "base,",
                               "concise"]  # fmt: skip
    assert runs[1:] == []


def test_votes_to_a_preference_dataset_from_a_terminal(home, env):
    from ftapp.arena.battles import record_vote
    from ftapp.arena.generation import generate_pending
    from ftapp.arena.prompts import Prompt
    from ftapp.arena.sessions import create_session, next_battle
    from ftapp.serving.backend import Sampling
    from tests.arena.conftest import arena_home, reviewer

    def chat(model, messages, sampling):
        yield "Arr!" if messages[0]["role"] == "system" else "Hello."

    services = arena_home(home)
    with services.db() as db:
        session = create_session(
            db, services.served_base, name="s1", source="t", contestants=["base", "pirate"],
            prompts=[Prompt([{"role": "user", "content": f"greet {i}"}]) for i in range(4)],
            sampling=Sampling(), user="t",
        )  # fmt: skip
    generate_pending(services.db, chat, workers=1)
    with services.db() as db:
        for _ in range(4):
            battle_id = next_battle(db, session.id, reviewer("rita"))
            record_vote(db, battle_id, "rita", "a")
    counts = json.loads(ftapp(env, "arena", "to-dataset", "v", "--dry-run", "--json").stdout)
    assert counts["win"] == 4 and counts["tie"] == 0
    assert ftapp(env, "data", "list").stdout.strip() == "no datasets yet"  # a dry run writes none
    made = json.loads(ftapp(env, "arena", "to-dataset", "votes", "--session", "s1",
                            "--ratios", "1,0,0", "--json").stdout)  # fmt: skip
    assert made["version"] == "votes@v1" and made["pairs"] == 4
    refused = ftapp(env, "arena", "to-dataset", "votes", check=False)
    assert refused.returncode == 2 and "exists" in refused.stderr
    bad = ftapp(env, "arena", "to-dataset", "other", "--ratios", "a,b,c", check=False)
    assert bad.returncode == 2 and "ratios must be numbers" in bad.stderr
    assert "other" not in ftapp(env, "data", "list").stdout
