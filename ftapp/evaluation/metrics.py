"""The automatic metrics of an evaluation: how one answer scores against its reference (exact
match, ROUGE-L, chrF, BLEU) or on its own (valid JSON, a regex, length), the description of
every metric the report and the UI show (preference accuracy too, which preference_accuracy.py
scores with the model), and `ScoringConfig`, the metrics an evaluation run computes.

Pure functions, no database. The library metrics come from Google's rouge-score and from
sacrebleu; both are imported when a `Scorer` is built, so importing this module stays cheap
(rouge-score pulls in nltk, seconds to import).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ftapp.errors import ValidationError


@dataclass(frozen=True)
class Metric:
    """How to show one metric: `scale` is the unit of its values ("0-1", "0-100", "ms", ...)."""

    name: str
    label: str
    needs_reference: bool
    higher_is_better: bool
    scale: str
    description: str = ""


# Length is informative rather than a quality score; shorter counts as better because a
# shorter answer costs less to generate and to read.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("exact_match", "Exact match", True, True, "0-1",
               "1 when the answer equals the reference, ignoring case, spacing and the "
               "punctuation around it."),
        Metric("rouge_l", "ROUGE-L", True, True, "0-1",
               "F-measure of the longest run of words shared in order with the reference."),
        Metric("chrf", "chrF", True, True, "0-100",
               "Character n-gram F-score against the reference (sacrebleu)."),
        Metric("bleu", "BLEU", True, True, "0-100",
               "Word n-gram precision against the reference, sentence level (sacrebleu)."),
        Metric("json_valid", "Valid JSON", False, True, "0-1",
               "1 when the answer, or its first fenced code block, parses as JSON."),
        Metric("regex", "Regex match", False, True, "0-1",
               "1 when the configured regular expression is found in the answer."),
        Metric("chars", "Characters", False, False, "characters",
               "Length of the answer in characters."),
        Metric("words", "Words", False, False, "words",
               "Length of the answer in whitespace-separated words."),
        Metric("latency_ms", "Latency", False, False, "ms",
               "Time to generate the whole answer, measured while generating."),
        Metric("tokens_per_second", "Tokens/s", False, True, "tokens/s",
               "Generation speed of the answer, measured while generating."),
        Metric("preference_accuracy", "Preference accuracy", False, True, "0-1",
               "On a preference version's pairs: 1 when the model gives the chosen answer a "
               "higher log-probability than the rejected one, else 0; 0.5 is chance."),
    ]
}  # fmt: skip

# The metrics this module computes from an answer's text; the others come from generation.
TEXT_METRICS = ("exact_match", "rouge_l", "chrf", "bleu", "json_valid", "regex", "chars", "words")
GENERATION_METRICS = ("latency_ms", "tokens_per_second")
# Scored with the model itself (its log-probabilities), not from the answer's text: see
# preference_accuracy.py. Only for examples from a preference version.
MODEL_METRICS = ("preference_accuracy",)
DEFAULT_METRICS = tuple(name for name in TEXT_METRICS if name != "regex")

# Han ideographs, hiragana and katakana: scripts written without spaces between words, so
# each character is its own token (as ROUGE is commonly run on Chinese).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.MULTILINE | re.DOTALL)


# --- pure metrics ------------------------------------------------------------------------


def _normalise(text: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def exact_match(answer: str, reference: str) -> float:
    """1.0 when answer and reference are equal after normalising both, else 0.0.

    The rule: Unicode NFKC (full-width letters and ligatures become plain ones), casefold,
    every run of whitespace becomes one space, and whitespace and punctuation (any Unicode
    punctuation: . , ! ? « » ¿ and the like) are stripped from both ends. So "Paris." equals
    "  paris", but "Paris, France" does not equal "Paris France".
    """
    return 1.0 if _normalise(answer) == _normalise(reference) else 0.0


class WordTokenizer:
    """ROUGE's tokenizer: casefolded Unicode words, each CJK character a token of its own.
    (rouge-score's default tokenizer keeps only ASCII letters and digits.)"""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure (0..1) of the answer against the reference."""
    return Scorer(ScoringConfig(("rouge_l",))).rouge_l(answer, reference)


def chrf(answer: str, reference: str) -> float:
    """Sentence chrF (0..100) of the answer against the reference."""
    return Scorer(ScoringConfig(("chrf",))).chrf(answer, reference)


def bleu(answer: str, reference: str) -> float:
    """Sentence BLEU (0..100, with effective order) of the answer against the reference."""
    return Scorer(ScoringConfig(("bleu",))).bleu(answer, reference)


def fenced_block(text: str, languages: tuple[str, ...]) -> str | None:
    """The content of the first ``` fenced block whose language tag (lowercased) is one of
    `languages` ("" for a bare fence), or None. A block left open (a cut-off answer) runs to
    the end of the text."""
    for match in _FENCE.finditer(text):
        if match.group(1).lower() in languages:
            return match.group(2)
    return None


def json_valid(answer: str) -> float:
    """1.0 when the whole answer (stripped) parses as JSON, or else the content of its first
    ```json fenced block (or, without one, its first bare ``` block); else 0.0. Any JSON value
    counts, a bare number or string too."""
    candidates = [answer, fenced_block(answer, ("json",)) or fenced_block(answer, ("",))]
    for text in candidates:
        if text is None or not text.strip():
            continue
        try:
            json.loads(text)
        except ValueError:  # json.JSONDecodeError is a ValueError
            continue
        return 1.0
    return 0.0


def compile_pattern(pattern: str) -> re.Pattern:
    """The compiled regular expression, or ValidationError saying why it can't be used."""
    if not pattern:
        raise ValidationError("regex '': the pattern is empty (it would match every answer)")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValidationError(f"regex {pattern!r}: {exc}") from None


def regex_match(answer: str, pattern: re.Pattern) -> float:
    """1.0 when the pattern is found anywhere in the answer (re.search), else 0.0."""
    return 1.0 if pattern.search(answer) else 0.0


def answer_length(answer: str) -> dict[str, int]:
    """{"chars": characters, "words": whitespace-separated words}."""
    return {"chars": len(answer), "words": len(answer.split())}


# --- configuration and the scorer ----------------------------------------------------------


@dataclass(frozen=True)
class ScoringConfig:
    """The metrics an evaluation run scores answers with; `regex` is the pattern of the "regex"
    metric (required with it). Generation metrics (latency_ms, tokens_per_second) may be
    listed; they are recorded while generating, not computed by the `Scorer`."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    regex: str | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.metrics if name not in METRICS]
        if unknown:
            raise ValidationError(
                f"unknown metric {unknown[0]!r}; known metrics: {', '.join(METRICS)}"
            )
        if not self.metrics:
            raise ValidationError(f"choose at least one metric among {', '.join(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValidationError(f"metric listed twice in {', '.join(self.metrics)}")
        if "regex" in self.metrics:
            if self.regex is None:
                raise ValidationError("the regex metric needs a regex pattern")
            compile_pattern(self.regex)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringConfig:
        """A config from stored or form values: {"metrics": [...], "regex": "..."}; missing
        metrics mean the defaults."""
        if not isinstance(data, dict):
            raise ValidationError("a scoring config is a mapping with metrics and regex")
        unknown = sorted(set(data) - {"metrics", "regex"})
        if unknown:
            raise ValidationError(f"unknown scoring field {unknown[0]!r} (known: metrics, regex)")
        metrics = data.get("metrics", DEFAULT_METRICS)
        if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
            raise ValidationError("metrics: a list of metric names")
        regex = data.get("regex")
        if regex is not None and not isinstance(regex, str):
            raise ValidationError("regex: a pattern as text")
        return cls(tuple(metrics), regex or None)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "regex": self.regex}


class Scorer:
    """Scores answers with one config. Build it once per run: the ROUGE, chrF and BLEU objects
    are not free to construct. One scorer per thread (the library objects keep caches)."""

    def __init__(self, config: ScoringConfig) -> None:
        from rouge_score.rouge_scorer import RougeScorer
        from sacrebleu.metrics import BLEU, CHRF

        self.config = config
        self._rouge = RougeScorer(["rougeL"], tokenizer=WordTokenizer())
        self._chrf = CHRF()
        self._bleu = BLEU(effective_order=True)
        self._pattern = compile_pattern(config.regex) if "regex" in config.metrics else None

    def rouge_l(self, answer: str, reference: str) -> float:
        return float(self._rouge.score(reference, answer)["rougeL"].fmeasure)

    def chrf(self, answer: str, reference: str) -> float:
        return float(self._chrf.sentence_score(answer, [reference]).score)

    def bleu(self, answer: str, reference: str) -> float:
        # Floating point rounding gives 100.00000000000004 for identical texts.
        return min(100.0, float(self._bleu.sentence_score(answer, [reference]).score))

    def score(self, answer: str, reference: str | None) -> dict[str, float | None]:
        """Each chosen text metric by name, in the config's order; a metric that needs a
        reference is None without one (no reference is not a score of 0)."""
        scores: dict[str, float | None] = {}
        for name in self.config.metrics:
            if name in GENERATION_METRICS or name in MODEL_METRICS:
                continue
            if METRICS[name].needs_reference and not reference:
                scores[name] = None
            else:
                scores[name] = self._one(name, answer, reference or "")
        return scores

    def _one(self, name: str, answer: str, reference: str) -> float:
        if name == "exact_match":
            return exact_match(answer, reference)
        if name == "rouge_l":
            return self.rouge_l(answer, reference)
        if name == "chrf":
            return self.chrf(answer, reference)
        if name == "bleu":
            return self.bleu(answer, reference)
        if name == "json_valid":
            return json_valid(answer)
        if name == "regex":
            assert self._pattern is not None  # ScoringConfig requires it with "regex"
            return regex_match(answer, self._pattern)
        return float(answer_length(answer)[name])  # chars, words


def score_answer(
    answer: str, reference: str | None, config: ScoringConfig
) -> dict[str, float | None]:
    """One answer's scores (see `Scorer.score`). Builds a scorer per call: for many answers,
    build one `Scorer` and reuse it."""
    return Scorer(config).score(answer, reference)
