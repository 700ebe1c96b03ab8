"""Model-as-judge: reading verdicts, the score of a pair judged in both orders, the requests
sent to an OpenAI-compatible judge (a scripted one on loopback, and the session's real vLLM
server), which hosts get the installation's API key, its errors (never the peer's text), and
the settings as stored in the database."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from ftapp.errors import ServingError, ValidationError
from ftapp.evaluation.judge import (
    API_KEY_ENV,
    SYSTEM_PROMPT,
    JudgeConfig,
    Judgment,
    Position,
    Winner,
    judge_health,
    judge_once,
    judge_pair,
    pair_score,
    parse_judge,
    parse_verdict,
)
from tests.evaluation.judge_stub import JudgeStub, always_a, prefers_longer, shown_answers

SHORT = "Paris."
LONG = "The capital of France is Paris, on the Seine."


def where(stub: JudgeStub) -> str:
    """The stub as messages name it: host:port."""
    return stub.url.removeprefix("http://")


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("A", "a"), ("b", "b"), ("[[A]]", "a"), ("[[b]]", "b"), ("**B**", "b"),
        ("Answer A", "a"), ("answer: B", "b"), ("Assistant B", "b"), ("The answer is A.", "a"),
        ("Final verdict: [[A]]", "a"), ("A is better.", "a"), ("  B\n", "b"), ('"A"', "a"),
        ("`B`", "b"), ("(A)", "a"), ("Tie.", "tie"), ("tie", "tie"), ("TIE", "tie"),
        ("[[tie]]", "tie"), ("**Tie**", "tie"),
        ("", "invalid"), ("   ", "invalid"), ("A or B", "invalid"), ("[[A]] [[B]]", "invalid"),
        ("A\nB", "invalid"), ("Both A and B are good.", "invalid"), ("C", "invalid"),
        ("[[C]]", "invalid"), ("I cannot decide.", "invalid"), ("AB", "invalid"),
        ("Assistant A's answer is more accurate because", "invalid"),
        ("B is a better answer than A", "invalid"), ("Apple", "invalid"), ("tied", "invalid"),
    ],
)  # fmt: skip
def test_parse_verdict(text: str, verdict: str) -> None:
    assert parse_verdict(text) == verdict


def judgments(*pairs: tuple[str, str]) -> list[Judgment]:
    return [Judgment(position, winner, "") for position, winner in pairs]  # type: ignore[arg-type]


def test_pair_score() -> None:
    # A judge that always says "A": the contestant wins when shown first, loses when second.
    assert pair_score(judgments(("a", "contestant"), ("b", "opponent"))) == 0.5
    assert pair_score(judgments(("a", "contestant"), ("b", "contestant"))) == 1.0
    assert pair_score(judgments(("a", "opponent"), ("b", "opponent"))) == 0.0
    assert pair_score(judgments(("a", "tie"), ("b", "contestant"))) == 0.75
    assert pair_score(judgments(("a", "invalid"), ("b", "contestant"))) == 1.0
    assert pair_score(judgments(("a", "opponent"), ("b", "invalid"))) == 0.0
    assert pair_score(judgments(("a", "invalid"), ("b", "invalid"))) is None
    assert pair_score([]) is None


def test_values_are_the_check_values_of_eval_judgments(db) -> None:
    schema = db["eval_judgments"].schema
    checks = {
        column: set(re.findall(r"'(\w+)'", values))
        for column, values in re.findall(r"CHECK \((\w+) IN \(([^)]*)\)\)", schema)
    }
    assert checks["contestant_position"] == set(get_args(Position))
    assert checks["winner"] == set(get_args(Winner))


def test_judge_config_round_trip_and_validation() -> None:
    config = parse_judge({"url": " https://judge.example:8000/v1/ ", "model": "big",
                          "api_key": "sk-secret", "temperature": "0", "max_tokens": 8})  # fmt: skip
    assert config == JudgeConfig("https://judge.example:8000/v1", "big", "sk-secret", 0.0, 8)
    stored = config.to_dict()
    assert "api_key" not in stored and "sk-secret" not in str(stored)
    assert JudgeConfig.from_dict(stored) == JudgeConfig("https://judge.example:8000/v1", "big",
                                                        max_tokens=8)  # fmt: skip
    assert parse_judge({"url": "http://h", "model": "m", "api_key": " "}).api_key is None

    bad = [
        ({"model": "m"}, "url"), ({"url": "ftp://host", "model": "m"}, "url"),
        ({"url": "http://", "model": "m"}, "url"), ({"url": "judge:8000", "model": "m"}, "url"),
        ({"url": "http://h"}, "model"), ({"url": "http://h", "model": "  "}, "model"),
        ({"url": "http://h", "model": "m", "temperature": 3}, "temperature"),
        ({"url": "http://h", "model": "m", "max_tokens": 0}, "max_tokens"),
        ({"url": "http://h", "model": "m", "max_tokens": 2.5}, "max_tokens"),
        ({"url": "http://h", "model": "m", "timeout_s": "soon"}, "timeout_s"),
        ({"url": "http://h", "model": "m", "temperature": True}, "temperature"),
        ({"url": "http://h", "model": "m", "seed": 1}, "seed"),
    ]  # fmt: skip
    for data, field in bad:
        with pytest.raises(ValidationError, match=field):
            parse_judge(data)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://judge.example:8000/v1#frag", "#fragment"),
        ("http://judge.example:8000#", "#fragment"),  # would swallow /v1/chat/completions
        ("https://judge.example/v1?api-version=1", "?query"),
        ("http://judge.example/?", "?query"),
        ("http://alice:hunter2@judge.example:8000/v1", "user name or password"),
        ("https://alice@judge.example/v1", "user name or password"),
        ("http://judge.example:99999/v1", "port"),
        ("http://judge.example:eighty/v1", "port"),
        ("file:///etc/passwd", "http:// or https:// with a host"),
        ("http:///v1", "http:// or https:// with a host"),
    ],
)
def test_judge_url_is_parsed_and_refused_naming_the_field(url: str, why: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_judge({"url": url, "model": "m"})
    message = str(refused.value)
    assert message.startswith("judge url: ") and why in message and "got " in message
    assert "alice" not in message and "hunter2" not in message  # credentials never echoed


def test_requests_carry_the_pair_in_order(monkeypatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with JudgeStub(reply=lambda body: "**B**", models=("judge",)) as stub:
        config = JudgeConfig(url=stub.url + "/v1/", model="judge", api_key="sk-test")
        verdict, raw = judge_once(config, "Capital of France?", "Paris", "first", "second")
        judge_once(JudgeConfig(url=stub.url, model="judge"), "Q2", None, "x", "y")
    assert (verdict, raw) == ("b", "**B**")
    first, second = stub.requests
    assert first.path == second.path == "/v1/chat/completions"
    body = first.body
    assert body["model"] == "judge" and body["temperature"] == 0.0 and body["stream"] is False
    assert body["max_tokens"] == 16
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = body["messages"][1]["content"]
    assert shown_answers(body) == ("first", "second")
    assert user.index("Capital of France?") < user.index("Paris") < user.index("first")
    assert "Reference Answer" in user
    assert first.headers["authorization"] == "Bearer sk-test"
    # No reference, no key anywhere: neither is sent.
    assert "Reference Answer" not in second.body["messages"][1]["content"]
    assert "authorization" not in second.headers


def test_the_installations_key_goes_only_to_the_hosts_listed_with_it(monkeypatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-from-env")
    with JudgeStub() as stub:
        port = stub.url.rsplit(":", 1)[1]
        # One server, two names: 127.0.0.1 is listed, localhost is not.
        listed = JudgeConfig(url=f"http://127.0.0.1:{port}/v1", model="judge")
        unlisted = JudgeConfig(url=f"http://LocalHost:{port}", model="judge")
        for config in (listed, unlisted):
            judge_once(config, "Q", None, "x", "y", api_hosts=("127.0.0.1",))
            assert judge_health(config, api_hosts=("127.0.0.1",)) is None
        # Exact names only, never a suffix or another name of the same machine.
        for hosts in ((), ("0.0.1",), (".0.0.1",), ("localhost.",), ("127.0.0.1:" + port,)):
            judge_once(listed, "Q", None, "x", "y", api_hosts=hosts)
        judge_once(unlisted, "Q", None, "x", "y", api_hosts=("localhost",))
        # A key typed with the URL was meant for that URL: it goes, listed or not.
        judge_once(JudgeConfig(url=unlisted.url, model="judge", api_key="sk-typed"), "Q", None,
                   "x", "y")  # fmt: skip
    sent = [
        (r.headers["host"].split(":")[0], r.headers.get("authorization")) for r in stub.requests
    ]
    assert sent == [
        ("127.0.0.1", "Bearer sk-from-env"), ("127.0.0.1", "Bearer sk-from-env"),
        ("localhost", None), ("localhost", None),
        *[("127.0.0.1", None)] * 5,
        ("localhost", "Bearer sk-from-env"),
        ("localhost", "Bearer sk-typed"),
    ]  # fmt: skip


def test_a_refusal_says_when_the_key_was_held_back(monkeypatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-from-env")
    with JudgeStub(fail_with=401) as stub:
        config = JudgeConfig(url=stub.url, model="judge")
        with pytest.raises(ServingError) as held_back:
            judge_once(config, "Q", None, "x", "y")
        with pytest.raises(ServingError) as sent:
            judge_once(config, "Q", None, "x", "y", api_hosts=("127.0.0.1",))
    assert str(held_back.value) == (
        f"the judge at {where(stub)} refused the request (HTTP 401 Unauthorized); "
        "FTAPP_JUDGE_API_KEY is sent only to the hosts in FTAPP_JUDGE_API_HOSTS"
    )
    assert (
        str(sent.value) == f"the judge at {where(stub)} refused the request (HTTP 401 Unauthorized)"
    )


def test_both_orders_cancel_position_bias() -> None:
    with JudgeStub(reply=prefers_longer) as stub:
        config = JudgeConfig(url=stub.url, model="judge")
        long_first = judge_pair(config, "Capital of France?", None, LONG, SHORT)
        short_first = judge_pair(config, "Capital of France?", None, SHORT, LONG)
    assert [shown_answers(body) for body in stub.chat_bodies] == [
        (LONG, SHORT), (SHORT, LONG), (SHORT, LONG), (LONG, SHORT)
    ]  # fmt: skip
    assert long_first == [Judgment("a", "contestant", "[[A]]"),
                          Judgment("b", "contestant", "[[B]]")]  # fmt: skip
    assert [j.winner for j in short_first] == ["opponent", "opponent"]
    assert pair_score(long_first) == 1.0
    assert pair_score(short_first) == 0.0

    with JudgeStub(reply=always_a) as stub:
        config = JudgeConfig(url=stub.url, model="judge")
        for contestant, opponent in [(LONG, SHORT), (SHORT, LONG)]:
            biased = judge_pair(config, "Capital of France?", None, contestant, opponent)
            assert [j.winner for j in biased] == ["contestant", "opponent"]
            assert pair_score(biased) == 0.5


def test_unparseable_verdicts_are_kept_raw_and_dropped_from_the_score() -> None:
    replies = iter(["I think both are fine", "[[A]]"])
    with JudgeStub(reply=lambda body: next(replies)) as stub:
        result = judge_pair(JudgeConfig(url=stub.url, model="judge"), "Q", None, LONG, SHORT)
    assert result == [Judgment("a", "invalid", "I think both are fine"),
                      Judgment("b", "opponent", "[[A]]")]  # fmt: skip
    assert pair_score(result) == 0.0


def test_http_error_names_the_judge_and_status() -> None:
    with JudgeStub(fail_with=500) as stub:
        config = JudgeConfig(url=stub.url, model="judge")
        with pytest.raises(ServingError) as error:
            judge_pair(config, "Q", None, "x", "y")
        health = judge_health(config)
    assert str(error.value) == (
        f"the judge at {where(stub)} refused the request (HTTP 500 Internal Server Error)"
    )
    assert len(stub.chat_bodies) == 1  # the first failure stops the pair
    assert health == (
        f"the judge at {where(stub)} refused to list its models (HTTP 500 Internal Server Error)"
    )


@pytest.mark.parametrize("status", [401, 502, 599, None])  # None: a 200 that is no completion
def test_the_peers_body_never_reaches_a_message(status: int | None) -> None:
    body = "<h1>Sign in again at https://phish.example</h1>" + "PEER-TEXT " * 10_000
    with JudgeStub(fail_with=status, raw_body=body) as stub:
        config = JudgeConfig(url=stub.url, model="judge")
        with pytest.raises(ServingError) as error:
            judge_once(config, "Q", None, "x", "y")
        health = judge_health(config)
    for message in (str(error.value), health):
        assert message is not None and message.startswith(f"the judge at {where(stub)} ")
        assert "PEER-TEXT" not in message and "phish" not in message and len(message) < 200
    if status:
        assert f"(HTTP {status}" in str(error.value)
    else:
        assert "not a chat completion" in str(error.value)


def test_closed_port_and_timeout_are_serving_errors() -> None:
    with JudgeStub() as stub:
        url = stub.url
    closed = JudgeConfig(url=url, model="judge")
    with pytest.raises(ServingError, match=re.escape(url.removeprefix("http://"))):
        judge_once(closed, "Q", None, "x", "y")
    health = judge_health(closed)
    assert health is not None and url.removeprefix("http://") in health
    assert "not answering" in health

    with JudgeStub(delay_s=2.0) as stub:
        slow = JudgeConfig(url=stub.url, model="judge", timeout_s=0.2)
        with pytest.raises(ServingError, match=re.escape(where(stub))):
            judge_once(slow, "Q", None, "x", "y")


def test_judge_health_reports_a_missing_model() -> None:
    with JudgeStub(models=("llama-70b", "qwen-72b")) as stub:
        assert judge_health(JudgeConfig(url=stub.url, model="llama-70b")) is None
        assert judge_health(JudgeConfig(url=stub.url + "/v1", model="qwen-72b")) is None
        missing = judge_health(JudgeConfig(url=stub.url, model="gpt-judge"))
    assert missing is not None
    assert where(stub) in missing and "gpt-judge" in missing and "llama-70b, qwen-72b" in missing
    assert {r.path for r in stub.requests} == {"/v1/models"}


@pytest.mark.slow
def test_judge_pair_on_real_vllm(vllm_server) -> None:
    config = JudgeConfig(url=vllm_server.url, model="base", max_tokens=16)
    assert judge_health(config) is None
    result = judge_pair(config, "What is the capital of France?", "Paris",
                        "The capital of France is Paris.", "It is Berlin.")  # fmt: skip
    assert [j.contestant_position for j in result] == ["a", "b"]
    assert all(j.winner in get_args(Winner) for j in result)
    assert all(j.raw.strip() for j in result), result  # the model's own text, kept
