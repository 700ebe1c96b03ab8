"""An evaluation run end to end on the real backend: the bundled model and the adapter trained
in this test session answer a frozen version's test split through vLLM (batched); the answers
are scored with the text metrics, a regex, the ready PEP 8 check and a judge (the same vLLM
server); the report finds the adapter better. `ftapp eval run` in a terminal gives the same
numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.arena.prompts import prompts_from_version
from ftapp.evaluation.report import build_report
from ftapp.evaluation.runs import create_run
from ftapp.records import RunStatus
from ftapp.services import Services
from ftapp.serving.backend import Sampling
from ftapp.store import evaluation as store
from tests.evaluation.conftest import generate_all
from tests.helpers import make_version
from tests.serving_fixtures import QUESTIONS, SECRET_WORD, home_with_adapter

pytestmark = pytest.mark.slow


@pytest.fixture
def vllm_services(tmp_path: Path, models_dir: Path, vllm_server, secret_adapter) -> Services:
    settings = home_with_adapter(tmp_path / "vllm-home", models_dir, secret_adapter)
    return Services(replace(settings, vllm_url=vllm_server.url))


def test_an_evaluation_run_finds_the_adapter_better(vllm_services, vllm_server, tmp_path, env,
                                                   count_tokens):  # fmt: skip
    services = vllm_services
    rows = [{"prompt": q, "completion": f"The secret word is {SECRET_WORD}."} for q in QUESTIONS]
    with services.db() as db:
        label = make_version(db, tmp_path, count_tokens, "secret-eval", rows=rows,
                             ratios=(0.25, 0.0, 0.75))  # fmt: skip
        prompts, source = prompts_from_version(db, label, "test")
        run = create_run(
            db, services.served_base, name="secret eval", prompts=prompts, source=source,
            contestants=["base", "secret"], sampling=Sampling(temperature=0, max_new_tokens=24),
            scoring={"metrics": ["exact_match", "rouge_l", "chrf", "regex"], "regex": SECRET_WORD},
            check_specs=[{"name": "pep8", "kind": "pep8"}],
            judge_config={"url": vllm_server.url, "model": "base", "max_tokens": 4}, user="admin",
        )  # fmt: skip
    assert len(prompts) >= 5
    assert generate_all(services, services.stream_chat, workers=4) == 2 * len(prompts)
    with services.db() as db:
        done = store.get_run(db, run.id)
        report = build_report(db, run.id)
        verdicts = store.judgments(db, run.id)
    assert done.status == RunStatus.DONE, done.error
    assert report.progress.done == 2 * len(prompts) and report.failed == {"base": 0, "secret": 0}
    secret, base = report.row("regex", "secret"), report.row("regex", "base")
    assert secret.value.mean >= 0.75 and base.value.mean == 0.0  # says the word; base never
    assert report.row("rouge_l", "secret").verdict == "better"
    assert report.row("tokens_per_second", "secret").value.mean > 0
    assert report.row("pep8", "secret").value.n == len(prompts)
    # The judge (the small base model) was asked about every pair in both orders; whatever
    # it said is kept, and what it could not parse is left out of the score.
    assert len(verdicts) == 2 * len(prompts)
    assert {v["contestant_position"] for v in verdicts} == {"a", "b"}

    # The same evaluation from a terminal, start to end: `ftapp eval run` generates through
    # the same server, scores, and prints the report the core builds from its rows. (Its
    # answers need not equal the ones above: greedy decoding in a batch that differs is not
    # bit-for-bit the same on vLLM.)
    home_env = {**env, "FTAPP_HOME": str(services.settings.home),
                "FTAPP_VLLM_URL": vllm_server.url}  # fmt: skip
    cli = subprocess.run(
        [sys.executable, "-m", "ftapp.cli", "eval", "run", "secret eval cli",
         "--contestants", "base,secret", "--version", label, "--metrics",
         "exact_match,rouge_l,chrf,regex", "--regex", SECRET_WORD, "--check", "pep8",
         "--max-new-tokens", "24", "--json"],
        env=home_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)
    with services.db() as db:
        core = json.loads(json.dumps(build_report(db, "secret eval cli").to_dict(), default=str))
    assert from_cli == core
    assert from_cli["run"]["status"] == "done"
    regex = {
        r["contestant"]: r["value"]["mean"] for r in from_cli["rows"] if r["metric"] == "regex"
    }
    assert regex["secret"] >= 0.75 and regex["base"] == 0.0


def test_vllm_scores_answers_as_the_in_process_backend_does(vllm_services, tmp_path):
    """Preference accuracy's log-probabilities through vLLM (/tokenize, prompt_logprobs) equal
    the in-process backend's forward pass on the same model and adapter, and the adapter
    taught the secret word finds the answer that says it far likelier than base does."""
    hf = Services(replace(vllm_services.settings, backend="hf", vllm_url=None))
    assert (vllm_services.backend.name, hf.backend.name) == ("vllm", "hf")
    prompt = [{"role": "user", "content": QUESTIONS[0]}]
    said = [{"role": "assistant", "content": f"The secret word is {SECRET_WORD}."}]
    other = [{"role": "assistant", "content": "I do not know any secret word."}]
    scores = {}
    for model in ("base", "secret"):
        for name, answer in (("said", said), ("other", other)):
            on_vllm = vllm_services.answer_likelihood(model, prompt, answer)
            in_process = hf.answer_likelihood(model, prompt, answer)
            assert on_vllm.logprob < 0 and in_process.logprob < 0
            assert on_vllm.tokens == in_process.tokens > 5  # the same tokens, end of turn too
            # Same tokens, same weights; vLLM's CPU kernels differ in the last digits.
            assert on_vllm.logprob == pytest.approx(in_process.logprob, rel=0.05, abs=0.5), (
                model, name)  # fmt: skip
            scores[model, name] = on_vllm.logprob
    margin = {m: scores[m, "said"] - scores[m, "other"] for m in ("base", "secret")}
    assert margin["secret"] > 0 and margin["secret"] > margin["base"] + 5
    hf.backend.close()
