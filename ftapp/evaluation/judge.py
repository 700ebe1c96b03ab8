"""Model-as-judge: a judge model behind any OpenAI-compatible endpoint (a larger model on vLLM,
a hosted API) says which of two answers to a prompt is better. This module owns the judge's
settings (`JudgeConfig`, stored in eval_runs.judge_json without its API key), the pairwise
prompt (MT-Bench's, cut down to a one-word verdict), reading the verdict, the HTTP calls, and
the score of one pair judged in both orders. Storing judgments is the evaluation runs' job;
the values here are exactly the CHECK values of the eval_judgments table (migration m007).

The judge is a peer the admin names, so: FTAPP_JUDGE_API_KEY goes only to the hosts listed in
FTAPP_JUDGE_API_HOSTS (`api_hosts`, from the caller's settings), and errors name the judge by
host and port with the HTTP status, never with text from the peer's reply.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from ftapp.errors import ServingError, ValidationError

Verdict = Literal["a", "b", "tie", "invalid"]
Position = Literal["a", "b"]
Winner = Literal["contestant", "opponent", "tie", "invalid"]

API_KEY_ENV = "FTAPP_JUDGE_API_KEY"
HEALTH_TIMEOUT_S = 10.0  # the UI waits on this before a run starts: fail fast
MAX_TOKENS_LIMIT = 4096
_MODEL_NAME = re.compile(r"[\w.:/@+-]{1,100}")  # the judge's model names shown in messages

# MT-Bench's pairwise judge prompt (Zheng et al. 2023, "pair-v2"), asking for the verdict alone:
# a short answer is cheap to generate and leaves nothing for the parser to guess at.
SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by "
    "two AI assistants to the user question displayed below. Choose the assistant that "
    "follows the user's instructions and answers the user's question better, considering "
    "helpfulness, relevance, accuracy and level of detail. If a reference answer is given, "
    "use it to check the correctness of the two answers. Avoid any position bias: the order "
    "in which the answers are presented must not influence your decision, and neither must "
    "their length. Reply with exactly one word: A if assistant A is better, B if assistant B "
    "is better, or tie if they are equally good."
)


@dataclass(frozen=True)
class JudgeConfig:
    url: str  # the endpoint's base URL, with or without a trailing /v1
    model: str  # the served model name the judge answers as
    api_key: str | None = None  # None: FTAPP_JUDGE_API_KEY, for the hosts listed with it
    temperature: float = 0.0  # greedy: the same pair gets the same verdict
    max_tokens: int = 16  # a verdict is one word
    timeout_s: float = 120.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JudgeConfig:
        """A checked config from stored JSON or a form (see `parse_judge`)."""
        return parse_judge(data)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the API key: this goes into the database (eval_runs.judge_json)."""
        values = asdict(self)
        del values["api_key"]
        return values


@dataclass(frozen=True)
class Judgment:
    contestant_position: Position  # where the contestant's answer was shown to the judge
    winner: Winner
    raw: str  # the judge's text, kept so a human can check the parser


def parse_judge(data: dict[str, Any]) -> JudgeConfig:
    """A JudgeConfig from loose values, refusing (with the field and why) a URL that is not
    http(s) with a host (or has credentials, a query or a fragment), an empty model name,
    unknown fields and out-of-range numbers."""
    if not isinstance(data, dict):
        raise ValidationError("the judge settings are a mapping of field: value")
    known = [field.name for field in fields(JudgeConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValidationError(f"judge: unknown field {unknown[0]!r} (known: {', '.join(known)})")

    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("judge url: required, like http://judge-host:8000/v1")
    url = _checked_url(url.strip().rstrip("/"))

    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ValidationError("judge model: required, the model name the endpoint serves")

    api_key = data.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ValidationError("judge api_key: must be text")

    temperature = _number(data, "temperature", 0.0)
    max_tokens = _number(data, "max_tokens", 16)
    timeout_s = _number(data, "timeout_s", 120.0)
    if not 0 <= temperature <= 2:
        raise ValidationError(f"judge temperature: must be from 0 to 2, got {temperature}")
    if max_tokens != int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ValidationError(
            f"judge max_tokens: must be a whole number from 1 to {MAX_TOKENS_LIMIT}, "
            f"got {max_tokens}"
        )
    if timeout_s <= 0:
        raise ValidationError(f"judge timeout_s: must be above 0, got {timeout_s}")
    return JudgeConfig(
        url=url,
        model=model.strip(),
        api_key=(api_key or "").strip() or None,  # an empty form field: no key
        temperature=float(temperature),
        max_tokens=int(max_tokens),
        timeout_s=float(timeout_s),
    )


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    # Never echo user:password back: the message lands in logs and on the page.
    shown = parts._replace(netloc=_host_port(parts.netloc)).geturl()
    if "@" in parts.netloc:
        raise ValidationError(
            f"judge url: must not hold a user name or password (the key goes in "
            f"FTAPP_JUDGE_API_KEY), got {shown!r}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"judge url: must be http:// or https:// with a host, got {shown!r}")
    try:
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        raise ValidationError(
            f"judge url: the port is not a number 0-65535, got {shown!r}"
        ) from None
    # ftapp appends /v1/chat/completions: after a "#" or a "?" that path would never be sent.
    if "#" in url:
        raise ValidationError(f"judge url: must not have a #fragment, got {shown!r}")
    if "?" in url:
        raise ValidationError(f"judge url: must not have a ?query, got {shown!r}")
    return url


def _host_port(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def _number(data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool):  # bool is an int to Python, never a number to a user
        raise ValidationError(f"judge {name}: must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"judge {name}: must be a number, got {value!r}") from None


# --- the prompt and the verdict --------------------------------------------------------------


def judge_messages(
    prompt: str, reference: str | None, answer_a: str, answer_b: str
) -> list[dict[str, str]]:
    """The chat messages for one judgment, in MT-Bench's layout."""
    parts = [f"[User Question]\n{prompt}\n"]
    if reference:
        parts.append(
            f"[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n"
        )
    parts.append(
        f"[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n"
    )
    parts.append(
        f"[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(parts)},
    ]


# Markdown and quoting a model may wrap its one word in: **B**, [[A]], "tie", `A`.
_DECORATION = re.compile(r"[*_`#\[\]()\"'“”‘’]")
# The whole reply, once undecorated: an optional lead-in ("Answer", "Final verdict:",
# "Assistant"), the verdict, an optional "is better", a final full stop.
_VERDICT = re.compile(
    r"(?:(?:the |my |final )*(?:answer|verdict|assistant|response|winner|choice)"
    r"(?: is)?\s*:?\s*)?"
    r"(a|b|tie)"
    r"(?: is better)?[.!]?"
)


def parse_verdict(text: str) -> Verdict:
    """ "a", "b" or "tie" when the reply is one of them (any case, decorated as a model might:
    "[[A]]", "**B**", "Answer A", "Tie."); "invalid" for anything else, including a reply
    that names both letters or argues before deciding: a guess would be a made-up vote."""
    cleaned = " ".join(_DECORATION.sub(" ", text).lower().split())
    match = _VERDICT.fullmatch(cleaned)
    return match.group(1) if match else "invalid"  # type: ignore[return-value]


# --- calling the judge -----------------------------------------------------------------------


def judge_once(
    config: JudgeConfig,
    prompt: str,
    reference: str | None,
    answer_a: str,
    answer_b: str,
    *,
    api_hosts: tuple[str, ...] = (),
) -> tuple[Verdict, str]:
    """One judgment of answer A against answer B: (verdict, the judge's raw text). Raises
    ServingError naming the judge's host when it can't be reached or refuses the request.
    FTAPP_JUDGE_API_KEY is sent only when the judge's host is in `api_hosts`."""
    body = {
        "model": config.model,
        "messages": judge_messages(prompt, reference, answer_a, answer_b),
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "stream": False,
    }
    url = f"{_base_url(config)}/v1/chat/completions"
    headers = _headers(config, api_hosts)
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=config.timeout_s)
    except httpx.HTTPError as exc:
        raise ServingError(
            f"the judge at {_where(config)} is not answering: {_describe(exc)}"
        ) from None
    if response.status_code != 200:
        raise ServingError(_refused(config, api_hosts, "the request", response.status_code))
    try:
        raw = response.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raw = None
    if not isinstance(raw, str):
        raise ServingError(
            f"the judge at {_where(config)} sent an answer that is not a chat completion"
        )
    return parse_verdict(raw), raw


def judge_pair(
    config: JudgeConfig,
    prompt: str,
    reference: str | None,
    contestant_answer: str,
    opponent_answer: str,
    *,
    api_hosts: tuple[str, ...] = (),
) -> list[Judgment]:
    """Two judgments of the same pair: the contestant shown as A, then as B."""
    orders = {"a": (contestant_answer, opponent_answer), "b": (opponent_answer, contestant_answer)}
    judgments = []
    for position, (answer_a, answer_b) in orders.items():
        verdict, raw = judge_once(config, prompt, reference, answer_a, answer_b,
                                  api_hosts=api_hosts)  # fmt: skip
        judgments.append(Judgment(position, _winner(verdict, position), raw))
    return judgments


def _winner(verdict: Verdict, position: Position) -> Winner:
    if verdict in ("tie", "invalid"):
        return verdict
    return "contestant" if verdict == position else "opponent"


def pair_score(judgments: list[Judgment]) -> float | None:
    """The contestant's score against the opponent: win 1, tie 0.5, loss 0, averaged over the
    valid judgments; None when none is valid.

    Judges prefer whichever answer they read first (or last) more often than chance. Judging
    each pair in both orders cancels that: a judge that always says "A" gives the contestant
    one win and one loss, exactly 0.5, the score of "no preference", instead of crowning
    whoever happened to be shown first."""
    points = {"contestant": 1.0, "tie": 0.5, "opponent": 0.0}
    valid = [points[j.winner] for j in judgments if j.winner != "invalid"]
    return sum(valid) / len(valid) if valid else None


def judge_health(config: JudgeConfig, *, api_hosts: tuple[str, ...] = ()) -> str | None:
    """None when the endpoint answers and serves config.model; else what is wrong, in words
    for the UI to show before a run starts."""
    url = f"{_base_url(config)}/v1/models"
    try:
        response = httpx.get(url, headers=_headers(config, api_hosts), timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"the judge at {_where(config)} is not answering: {_describe(exc)}"
    if response.status_code != 200:
        return _refused(config, api_hosts, "to list its models", response.status_code)
    try:
        served = [model["id"] for model in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        served = None
    if not isinstance(served, list) or not all(isinstance(name, str) for name in served):
        return f"the judge at {_where(config)} does not list models the OpenAI way (GET /v1/models)"
    if config.model not in served:
        # The peer's model names are shown only when they look like model names.
        names = [name for name in served if _MODEL_NAME.fullmatch(name)][:10]
        return (
            f"the judge at {_where(config)} does not serve the model {config.model!r} "
            f"(it serves: {', '.join(names) or 'nothing by a plain name'})"
        )
    return None


def _base_url(config: JudgeConfig) -> str:
    """The URL without a trailing /v1: users paste it either way."""
    url = config.url.rstrip("/")
    return url.removesuffix("/v1")


def _where(config: JudgeConfig) -> str:
    """The judge as host:port, for messages: never credentials, a path or a query."""
    return _host_port(urlsplit(config.url).netloc)


def _sends_env_key(config: JudgeConfig, api_hosts: tuple[str, ...]) -> bool:
    # Exact names only: a suffix match would hand the key to evil-example.com for example.com.
    return (urlsplit(config.url).hostname or "") in api_hosts


def _headers(config: JudgeConfig, api_hosts: tuple[str, ...]) -> dict[str, str]:
    # A key given with the config was given for its URL; the installation's key only for the
    # hosts listed with it, or any URL an admin types would receive it.
    key = config.api_key
    if not key and _sends_env_key(config, api_hosts):
        key = os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _refused(config: JudgeConfig, api_hosts: tuple[str, ...], what: str, status: int) -> str:
    """The peer's status in words, not its body: a judge may answer anything there."""
    try:
        phrase = f" {HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    text = f"the judge at {_where(config)} refused {what} (HTTP {status}{phrase})"
    held_back = not config.api_key and os.environ.get(API_KEY_ENV)
    if status in (401, 403) and held_back and not _sends_env_key(config, api_hosts):
        text += f"; {API_KEY_ENV} is sent only to the hosts in FTAPP_JUDGE_API_HOSTS"
    return text


def _describe(exc: httpx.HTTPError) -> str:
    # Some httpx errors (a timeout) have an empty message; their type then says what happened.
    return str(exc) or type(exc).__name__
