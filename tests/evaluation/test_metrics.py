"""The automatic metrics on hand-worked cases: exact match's normalisation, ROUGE-L worked out
from the longest common subsequence (in French and Chinese too), chrF and BLEU against
sacrebleu's corpus functions, JSON validity, regexes, and the scoring config."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from ftapp.errors import ValidationError
from ftapp.evaluation.metrics import (
    DEFAULT_METRICS,
    METRICS,
    Scorer,
    ScoringConfig,
    WordTokenizer,
    answer_length,
    bleu,
    chrf,
    compile_pattern,
    exact_match,
    json_valid,
    regex_match,
    rouge_l,
    score_answer,
)

# --- exact match -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("Paris.", "paris", 1.0),  # trailing punctuation, case
        ("  PARIS \n", "Paris", 1.0),  # surrounding whitespace
        ("New   York\tCity", "new york city", 1.0),  # inner whitespace collapsed
        ("Ｐａｒｉｓ", "Paris", 1.0),  # full-width letters: NFKC
        ("Straße", "STRASSE", 1.0),  # casefold, not lower: ß -> ss
        ("«Paris»", '"Paris"', 1.0),  # any Unicode punctuation at the ends
        ("¿Qué?", "qué", 1.0),
        ("5.", "5", 1.0),
        ("Paris, France", "Paris France", 0.0),  # punctuation inside is kept
        ("3.5", "35", 0.0),
        ("$5", "5", 0.0),  # a symbol is not punctuation
        ("Pari", "Paris", 0.0),
        ("", "Paris", 0.0),
    ],
)
def test_exact_match_normalises_both_sides(answer: str, reference: str, expected: float) -> None:
    assert exact_match(answer, reference) == expected
    assert exact_match(reference, answer) == expected


# --- ROUGE-L -----------------------------------------------------------------------------


def test_rouge_l_worked_by_hand() -> None:
    # answer    (7 tokens): the cat was on a mat today
    # reference (6 tokens): the cat sat on the mat
    # LCS: "the cat on mat", length 4. Precision 4/7, recall 4/6 = 2/3,
    # F = 2PR / (P + R) = 2 * (4/7) * (2/3) / (4/7 + 2/3) = (16/21) / (26/21) = 8/13.
    assert rouge_l("the cat was on a mat today", "the cat sat on the mat") == pytest.approx(8 / 13)
    # Case and punctuation don't make tokens differ.
    assert rouge_l("The cat, sat on the MAT!", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l("dogs bark", "the cat sat") == 0.0
    assert rouge_l("", "the cat sat") == 0.0


def test_rouge_l_scores_french_by_its_accented_words() -> None:
    # [le, café, est, très, chaud] against [le, café, était, très, chaud]: LCS 4 of 5 tokens
    # each side, so P = R = F = 4/5. "était" and "est" differ although their ASCII letters
    # ("tait", "est") would not tell much.
    assert rouge_l("Le café est très chaud", "le café était très chaud") == pytest.approx(0.8)
    assert rouge_l("élève", "eleve") == 0.0
    assert WordTokenizer().tokenize("L'élève ÉTAIT là.") == ["l", "élève", "était", "là"]


def test_rouge_l_scores_chinese_character_by_character() -> None:
    # rouge-score's default tokenizer drops every non-ASCII letter: Chinese scores 0 there.
    default = RougeScorer(["rougeL"]).score("我喜欢狗", "我喜欢猫")["rougeL"].fmeasure
    assert default == 0.0
    # 我 喜 欢 猫 against 我 喜 欢 狗: LCS 3 of 4 tokens each side, P = R = F = 3/4.
    assert rouge_l("我喜欢猫", "我喜欢狗") == pytest.approx(0.75)
    # Latin words inside CJK text stay whole words.
    assert WordTokenizer().tokenize("我喜欢Python 3") == ["我", "喜", "欢", "python", "3"]
    assert rouge_l("我喜欢Python", "我喜欢python") == pytest.approx(1.0)


# --- chrF and BLEU -----------------------------------------------------------------------


def test_chrf_and_bleu_limits() -> None:
    text = "the cat sat on the mat"
    assert chrf(text, text) == pytest.approx(100.0)
    assert bleu(text, text) == pytest.approx(100.0)
    assert bleu(text, text) <= 100.0
    assert chrf("xyz qqq", "abc def") == 0.0
    assert bleu("xyz qqq", "abc def") == 0.0


def test_chrf_and_bleu_on_a_partial_match_agree_with_sacrebleu_corpus_functions() -> None:
    answer, reference = "the cat sat on a mat", "the cat sat on the mat"
    # BLEU by hand: modified n-gram precisions 1-gram 5/6 (all but "a"), 2-gram 3/5 (the cat,
    # cat sat, sat on), 3-gram 2/4 (the cat sat, cat sat on), 4-gram 1/3 (the cat sat on);
    # equal lengths so no brevity penalty: (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25.
    assert bleu(answer, reference) == pytest.approx(100 * (1 / 12) ** 0.25)
    assert bleu(answer, reference) == pytest.approx(
        sacrebleu.corpus_bleu([answer], [[reference]]).score
    )
    assert chrf(answer, reference) == pytest.approx(
        sacrebleu.corpus_chrf([answer], [[reference]]).score
    )
    assert 0.0 < chrf(answer, reference) < 100.0


# --- JSON, regex, length -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"name": "Ada", "tags": [1, 2]}', 1.0),
        ("  [1, 2, 3]\n", 1.0),
        ('Here it is:\n```json\n{"a": 1}\n```\nAnything else?', 1.0),
        ('Sure.\n```\n{"a": null}\n```', 1.0),  # a bare fence
        ('```JSON\n{"a": true}\n```', 1.0),
        ('```\nnot json\n```\n```json\n{"b": 2}\n```', 1.0),  # the json block is preferred
        ('```json\n{"a": 1}', 1.0),  # the closing fence cut off, the JSON whole
        ('{"a": 1, "b": [', 0.0),  # truncated
        ('```json\n{"a": 1,}\n```', 0.0),  # trailing comma
        ("{'a': 1}", 0.0),  # Python, not JSON
        ("The answer is 4.", 0.0),
        ("", 0.0),
    ],
)
def test_json_valid(answer: str, expected: float) -> None:
    assert json_valid(answer) == expected


def test_regex_match_and_bad_patterns() -> None:
    year = compile_pattern(r"\b\d{4}\b")
    assert regex_match("It was in 1969, in July.", year) == 1.0
    assert regex_match("It was in July.", year) == 0.0
    with pytest.raises(ValidationError, match=r"^regex '\(unclosed': missing \)"):
        compile_pattern("(unclosed")
    with pytest.raises(ValidationError, match="regex '': the pattern is empty"):
        compile_pattern("")


def test_answer_length() -> None:
    assert answer_length("Two words") == {"chars": 9, "words": 2}
    assert answer_length("  héllo\n\nwörld  !") == {"chars": 17, "words": 3}
    assert answer_length("") == {"chars": 0, "words": 0}


# --- descriptions, config, scorer --------------------------------------------------------


def test_every_metric_is_described() -> None:
    assert list(METRICS) == [
        "exact_match", "rouge_l", "chrf", "bleu", "json_valid", "regex", "chars", "words",
        "latency_ms", "tokens_per_second", "preference_accuracy",
    ]  # fmt: skip
    assert all(name == metric.name for name, metric in METRICS.items())
    assert {n for n, m in METRICS.items() if m.needs_reference} == {
        "exact_match", "rouge_l", "chrf", "bleu"
    }  # fmt: skip
    assert METRICS["chrf"].scale == "0-100" and METRICS["rouge_l"].scale == "0-1"
    assert not METRICS["latency_ms"].higher_is_better
    assert METRICS["tokens_per_second"].higher_is_better


def test_scoring_config_defaults_round_trip_and_validation() -> None:
    default = ScoringConfig.from_dict({})
    assert default.metrics == DEFAULT_METRICS
    assert "regex" not in default.metrics and "rouge_l" in default.metrics
    config = ScoringConfig.from_dict({"metrics": ["exact_match", "regex"], "regex": r"\d+"})
    assert config.to_dict() == {"metrics": ["exact_match", "regex"], "regex": r"\d+"}
    assert ScoringConfig.from_dict(config.to_dict()) == config

    with pytest.raises(ValidationError, match=r"unknown metric 'meteor'; known metrics: exact_"):
        ScoringConfig.from_dict({"metrics": ["bleu", "meteor"]})
    with pytest.raises(ValidationError, match="needs a regex"):
        ScoringConfig.from_dict({"metrics": ["regex"]})
    with pytest.raises(ValidationError, match=r"regex '\[a-': "):
        ScoringConfig(("regex",), "[a-")
    with pytest.raises(ValidationError, match="at least one metric"):
        ScoringConfig.from_dict({"metrics": []})
    with pytest.raises(ValidationError, match="unknown scoring field 'metric'"):
        ScoringConfig.from_dict({"metric": ["bleu"]})


def test_reference_metrics_are_none_without_a_reference() -> None:
    config = ScoringConfig(
        ("exact_match", "rouge_l", "chrf", "bleu", "json_valid", "regex", "chars", "words"),
        regex=r"^\{",
    )
    scorer = Scorer(config)
    for reference in (None, ""):
        assert scorer.score('{"city": "Paris"}', reference) == {
            "exact_match": None, "rouge_l": None, "chrf": None, "bleu": None,
            "json_valid": 1.0, "regex": 1.0, "chars": 17.0, "words": 2.0,
        }  # fmt: skip


def test_score_answer_with_a_reference() -> None:
    config = ScoringConfig(("exact_match", "rouge_l", "bleu", "words", "latency_ms"))
    scores = score_answer("the cat sat on a mat", "the cat sat on the mat", config)
    # Generation metrics are recorded while generating, not computed here.
    assert list(scores) == ["exact_match", "rouge_l", "bleu", "words"]
    assert scores["exact_match"] == 0.0
    assert scores["rouge_l"] == pytest.approx(5 / 6)  # LCS 5 of 6 tokens each side
    assert scores["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25)
    assert scores["words"] == 6.0
