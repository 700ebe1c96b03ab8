"""The Arena's API against the real app in a subprocess (gradio_client calls the endpoints the
page's buttons call): free battles with sides drawn at random, identities absent from every
response before the vote, the reveal after it, a second vote refused; a session created,
pre-generated in the background, judged, picked up again after a reload; the leaderboard and
exports. Generation is the echo backend: these tests are about the plumbing (the real backend
is exercised in tests/arena/test_session_on_vllm.py and the browser test)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.arena.conftest import running_arena_app
from tests.helpers import write_jsonl
from tests.live_app import LiveApp

pytestmark = pytest.mark.slow
SECRET_NAMES = ("concise", "pirate")  # "base" is in every echo answer: all three run on it
# What the session endpoints return (gr.State and buttons are not part of the API).
SESSION_VIEW = ("instructions", "progress", "chat_a", "chat_b", "reveal", "score_a", "score_b",
                "comment")  # fmt: skip
VOTE_VIEW = ("reveal", "score_a", "score_b", "comment")  # a vote leaves the answers as they are


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    with running_arena_app(tmp_path_factory.mktemp("arena") / "home", models_dir) as live:
        yield live


def client_for(app: LiveApp, tmp_path: Path | None = None) -> Client:
    """A new browser tab: its own gr.State (the battle on screen)."""
    downloads = str(tmp_path / "downloads") if tmp_path else None
    return Client(app.url, verbose=False, **({"download_files": downloads} if downloads else {}))


def texts(value) -> str:
    return json.dumps(value)


def test_free_battles_are_blind_until_the_vote_then_locked(app: LiveApp):
    for _ in range(12):
        client = client_for(app)
        shown = client.predict("Name a fruit", api_name="/free_send")
        assert not any(name in texts(shown) for name in SECRET_NAMES)
        battle = app.query("SELECT * FROM battles ORDER BY id DESC LIMIT 1")[0]
        assert battle["status"] == "ready" and battle["created_by"] == "admin"
        voted = dict(zip(VOTE_VIEW, client.predict(None, None, "", api_name="/f_vote_b"),
                         strict=True))  # fmt: skip
        assert f"A was {battle['model_a']}, B was {battle['model_b']}" in voted["reveal"]
        with pytest.raises(AppError, match="already voted"):
            client.predict(None, None, "", api_name="/f_vote_a")
    battles = app.query("SELECT model_a FROM battles WHERE session_id IS NULL")
    votes = app.query("SELECT battle_id, choice FROM votes")
    assert len(battles) == 12 and len(votes) == 12
    assert {v["choice"] for v in votes} == {"b"}
    assert len(Counter(b["model_a"] for b in battles)) > 1  # sides are drawn, not fixed


def test_a_vote_needs_a_battle_of_ones_own(app: LiveApp):
    with pytest.raises(AppError, match="no battle to vote on"):
        client_for(app).predict(None, None, "", api_name="/s_vote_a")
    with pytest.raises(AppError, match="prompt is empty"):
        client_for(app).predict("   ", api_name="/free_send")


def test_follow_ups_and_scores(app: LiveApp):
    client = client_for(app)
    client.predict("first", api_name="/free_send")
    shown = client.predict("second", api_name="/free_send")
    chat_a = shown[2]
    assert [m["role"] for m in chat_a] == ["user", "assistant", "user", "assistant"]
    client.predict("4", "2", "A is funnier", api_name="/f_vote_a")
    vote = app.query("SELECT * FROM votes ORDER BY id DESC LIMIT 1")[0]
    assert (vote["score_a"], vote["score_b"], vote["comment"]) == (4, 2, "A is funnier")
    other = client_for(app)
    other.predict("third", api_name="/free_send")
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio checks scores
        other.predict("9", None, "", api_name="/f_vote_a")
    assert app.query("SELECT COUNT(*) AS n FROM votes WHERE score_a = 9")[0]["n"] == 0


def test_a_session_through_the_api(app: LiveApp, tmp_path: Path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": f"question {i}"} for i in range(3)])  # fmt: skip
    admin = client_for(app)
    report = admin.predict(
        "api review", 1, "Pick the **better** answer.", ["base", "pirate"], "an uploaded file",
        None, "test", handle_file(str(prompts)), "", 0.7, 0.95, 16, "",
        api_name="/arena_create_session",
    )  # fmt: skip
    assert "Created session" in report
    deadline = time.monotonic() + 60
    while app.query("SELECT status FROM eval_sessions")[0]["status"] != "open":
        assert time.monotonic() < deadline, "the background generator did not open the session"
        time.sleep(0.2)
    assert admin.predict(None, api_name="/arena_sessions")

    tab = client_for(app)
    tab.predict(None, api_name="/arena_sessions")  # the page lists sessions on load
    # The page opens the session (the dropdown's change): instructions, progress, a battle.
    first = dict(zip(SESSION_VIEW, tab.predict("api review", api_name="/session_open"),
                     strict=True))  # fmt: skip
    assert first["instructions"] == "Pick the **better** answer."
    assert "You judged 0 of 3" in first["progress"]
    assert "pirate" not in texts(first)
    # A reload (a new tab) picks up the same battle.
    again = dict(zip(SESSION_VIEW, client_for(app).predict("api review",
                 api_name="/session_next"), strict=True))  # fmt: skip
    assert again["chat_a"] == first["chat_a"] and again["chat_b"] == first["chat_b"]
    for judged in range(1, 4):
        tab.predict("api review", api_name="/session_next")
        voted = dict(zip((*VOTE_VIEW, "progress"), tab.predict(None, None, "",
                     api_name="/s_vote_tie"), strict=True))  # fmt: skip
        assert f"You judged {judged} of 3" in voted["progress"]  # the vote brings it up to date
    done = dict(zip(SESSION_VIEW, tab.predict("api review", api_name="/session_next"),
                    strict=True))  # fmt: skip
    assert "judged every battle" in done["reveal"]
    rows = app.query(
        "SELECT v.reviewer, COUNT(*) AS n FROM votes v JOIN battles b ON b.id = v.battle_id "
        "WHERE b.session_id IS NOT NULL GROUP BY v.reviewer"
    )
    assert rows == [{"reviewer": "admin", "n": 3}]


def test_leaderboard_and_exports_through_the_api(app: LiveApp, tmp_path: Path):
    client = client_for(app, tmp_path)
    client.predict("export me", api_name="/free_send")
    client.predict(None, None, "", api_name="/f_vote_a")
    shown = client.predict("All battles", api_name="/leaderboard")
    n_votes = app.query("SELECT COUNT(*) AS n FROM votes")[0]["n"]
    assert f"{n_votes} votes" in shown[1]
    path = client.predict("All battles", api_name="/export_battles_jsonl")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert len(lines) >= n_votes
    with pytest.raises(AppError, match="no evaluation session"):
        client.predict("no such session", api_name="/export_battles_csv")


def test_the_votes_to_a_preference_version_through_the_api(app: LiveApp, tmp_path: Path):
    """The endpoints counting and converting the votes, as the page calls them. On the echo
    backend every contestant answers the same words (the model's name, and all three run on
    base), so each battle counts under "same answers" and the conversion is refused, writing
    nothing; tests/arena/test_preferences.py and tests/test_cli.py convert real pairs."""
    client = client_for(app, tmp_path)
    client.predict("teach me", api_name="/free_send")
    client.predict(None, None, "", api_name="/f_vote_a")
    counted = client.predict("All battles", api_name="/count_vote_rules")
    assert "battles per rule: win: 0" in counted and "same answers: " in counted
    assert "0 pairs and 0 answers labelled bad would be written" in counted
    with pytest.raises(AppError, match="Name the new dataset first"):
        client.predict("All battles", "", api_name="/votes_to_dataset")
    with pytest.raises(AppError, match="no vote gives a preference row yet"):
        client.predict("All battles", "arena votes", api_name="/votes_to_dataset")
    assert app.query("SELECT COUNT(*) AS n FROM datasets WHERE name = 'arena votes'")[0]["n"] == 0


def test_checks_through_the_api(app: LiveApp, tmp_path: Path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl",
                          [{"prompt": f"check me {i}"} for i in range(2)])  # fmt: skip
    admin = client_for(app)
    admin.predict("checked api", 1, "", ["base", "pirate"], "an uploaded file", None, "test",
                  handle_file(str(prompts)), "", 0.7, 0.95, 16, "",
                  api_name="/arena_create_session")  # fmt: skip
    deadline = time.monotonic() + 60
    while (
        app.query("SELECT status FROM eval_sessions WHERE name = 'checked api'")[0]["status"]
        != "open"
    ):
        assert time.monotonic() < deadline, "the session did not open"
        time.sleep(0.2)
    (first,) = app.query("SELECT MIN(b.id) AS id FROM battles b JOIN eval_sessions s "
                         "ON s.id = b.session_id WHERE s.name = 'checked api'")  # fmt: skip
    marked = admin.predict(f"#{first['id']} · check me 0", "B", api_name="/arena_mark_check")
    assert f"Battle #{first['id']} is a check: B is the better side" in marked
    added = admin.predict("checked api", "2 + 2?", "4", "5", api_name="/arena_add_check")
    assert "Added check battle" in added
    with pytest.raises(AppError, match="better and the worse answer are the same"):
        admin.predict("checked api", "2 + 2?", "4", "4", api_name="/arena_add_check")
    with pytest.raises(AppError, match="share or a percentage"):
        admin.predict("checked api", "most", api_name="/arena_min_accuracy")
    assert "below 75% on checks" in admin.predict("checked api", "75%",
                                                  api_name="/arena_min_accuracy")  # fmt: skip
    checks = app.query("SELECT gold_choice, is_check FROM battles WHERE gold_choice IS NOT NULL "
                       "ORDER BY id")  # fmt: skip
    assert len(checks) == 2 and checks[0] == {"gold_choice": "b", "is_check": 0}
    (session,) = app.query("SELECT min_gold_accuracy FROM eval_sessions "
                           "WHERE name = 'checked api'")  # fmt: skip
    assert session["min_gold_accuracy"] == 0.75
    shown = admin.predict("checked api", api_name="/leaderboard")
    assert "Every reviewer is at or above 75% on checks" in shown[13]
