"""An evaluation session end to end on the real backend: the bundled model, the adapter trained
in this test session and a prompt-engineered variant answer every prompt once through vLLM;
two reviewers judge every battle (overlap 2); the leaderboard and the agreement between them
are computed; the preference export is imported back as a dataset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

from ftapp.arena.battles import record_vote
from ftapp.arena.contestants import add_prompt_variant
from ftapp.arena.export import write_preferences
from ftapp.arena.generation import generate_pending
from ftapp.arena.leaderboard import leaderboard
from ftapp.arena.prompts import prompts_from_file
from ftapp.arena.sessions import create_session, generation_progress, next_battle
from ftapp.auth import User
from ftapp.data.importer import import_file
from ftapp.records import Role, SessionStatus
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.store import arena as store
from tests.helpers import write_jsonl
from tests.serving_fixtures import SECRET_QUESTION, SECRET_WORD, home_with_adapter

pytestmark = pytest.mark.slow
PROMPTS = [SECRET_QUESTION, "Tell me the secret word.", "What is the capital of France?",
           "Name a colour."]  # fmt: skip


@pytest.fixture
def vllm_services(tmp_path: Path, models_dir: Path, vllm_server, secret_adapter) -> Services:
    """A fresh home served by the session's vLLM server, with the secret adapter registered."""
    settings = home_with_adapter(tmp_path / "vllm-home", models_dir, secret_adapter)
    services = Services(replace(settings, vllm_url=vllm_server.url))
    with services.db() as db:
        add_prompt_variant(db, services.served_base, "terse",
                           "Answer in at most five words.", user="admin")  # fmt: skip
    return services


def test_a_session_from_creation_to_preference_dataset(vllm_services, tmp_path, count_tokens):
    services = vllm_services
    prompts, source = prompts_from_file(
        write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    )
    with services.db() as db:
        session = create_session(
            db, services.served_base, name="secret review", prompts=prompts, source=source,
            contestants=["base", "secret", "terse"],
            sampling=Sampling(temperature=0, max_new_tokens=24), overlap=2,
            instructions="Prefer the answer that knows the secret word.", user="admin",
        )  # fmt: skip

    assert generate_pending(services.db, services.stream_chat, workers=4) == 4 * 3
    with services.db() as db:
        progress = generation_progress(db, session.id)
        answers = {(a["prompt_id"], a["contestant"]): a for a in
                   store.session_answers(db, session.id)}  # fmt: skip
        assert store.get_session(db, session.id).status == SessionStatus.OPEN
        first_prompt = store.session_prompts(db, session.id)[0]["id"]
    assert (progress.done, progress.failed) == (12, 0)
    assert SECRET_WORD in answers[(first_prompt, "secret")]["answer"].lower()
    assert SECRET_WORD not in answers[(first_prompt, "base")]["answer"].lower()

    def judge(battle, who: str) -> str:
        """Rita prefers the secret word, then the shorter answer; Sam the secret word, then
        the longer one: they agree on some battles and not on others."""
        a, b = (c[-1]["content"] for c in (battle.conversation_a, battle.conversation_b))
        knows_a, knows_b = SECRET_WORD in a.lower(), SECRET_WORD in b.lower()
        if knows_a != knows_b:
            return "a" if knows_a else "b"
        if len(a) == len(b):
            return "tie"
        shorter = "a" if len(a) < len(b) else "b"
        return shorter if who == "rita" else {"a": "b", "b": "a"}[shorter]

    labels: dict[str, dict[int, str]] = {"rita": {}, "sam": {}}
    with services.db() as db:
        for who in labels:
            user = User(who, Role.REVIEWER)
            while (battle_id := next_battle(db, session.id, user)) is not None:
                choice = judge(store.get_battle(db, battle_id), who)
                record_vote(db, battle_id, who, choice)
                labels[who][battle_id] = choice
        board = leaderboard(db, "secret review", n_boot=300)
        assert write_preferences(db, tmp_path / "prefs.jsonl", "secret review") > 0

    assert len(labels["rita"]) == len(labels["sam"]) == 4 * 3  # overlap 2: both judge all
    assert board.n_votes == 24 and board.ratings[0].model == "secret"
    (pair,) = board.reviewer_pairs
    shared = sorted(labels["rita"])
    expected = cohen_kappa_score([labels["rita"][i] for i in shared],
                                 [labels["sam"][i] for i in shared])  # fmt: skip
    assert pair.n_shared == 12 and pair.kappa == pytest.approx(expected)
    assert board.fleiss_kappa is not None

    with services.db() as db:
        report = import_file(db, tmp_path / "prefs.jsonl", "arena-preferences",
                             count_tokens=count_tokens, max_tokens=512)  # fmt: skip
    assert report.source_format == "preference" and report.n_imported > 0
    assert not report.problems
