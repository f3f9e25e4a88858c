"""Official VQA accuracy: DESIGN §3 vectors, hand-computed cases, and a property test against a line-by-line
transcription of the official evaluator's loop (dict-based leave-one-out, the periodStrip quirk included)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leverplus.metrics.vqa_accuracy import (
    ARTICLES,
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    normalize_answer,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    ("prediction", "gts", "expected"),
    [
        ("yes", ["yes"] * 10, 1.0),
        ("Yes", ["yes"] * 10, 0.0),  # no normalisation when all GT agree
        ("Yes", ["yes"] * 9 + ["no"], 1.0),
        ("two", ["2"] * 3 + ["3"] * 7, 0.9),
        ("the dog", ["dog"] * 5 + ["cat"] * 5, 1.0),
        ("2.", ["2"] * 5 + ["3"] * 5, 1.0),
    ],
)
def test_design_vectors(prediction: str, gts: list[str], expected: float) -> None:
    assert vqa_accuracy(prediction, gts) == pytest.approx(expected)


@pytest.mark.parametrize(("m", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0)])
def test_m_matching_answers_give_the_official_steps(m: int, expected: float) -> None:
    gts = ["cat"] * m + ["dog"] * (10 - m)
    assert vqa_accuracy("cat", gts) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "gts", "expected"),
    [
        ("dont", ["don't"] * 5 + ["no"] * 5, 1.0),  # contraction table
        ("1,000", ["1000"] * 4 + ["many"] * 6, 1.0),  # comma between digits is deleted
        ("black/white", ["black white"] * 4 + ["gray"] * 6, 1.0),  # slash separates words
        ("3.5", ["3.5"] * 4 + ["3"] * 6, 1.0),  # a period before a digit stays
        ("3.5", ["35"] * 4 + ["3"] * 6, 0.0),
        ("none", ["0"] * 4 + ["1"] * 6, 1.0),
        ("An Apple", ["apple"] * 4 + ["pear"] * 6, 1.0),
        ("  red\n", ["red"] * 10, 1.0),  # whitespace is always cleaned
        ("red.", ["red"] * 10, 0.0),  # ...but punctuation only when GT disagree
    ],
)
def test_normalisation_rules(prediction: str, gts: list[str], expected: float) -> None:
    assert vqa_accuracy(prediction, gts) == pytest.approx(expected)


def test_lenient_mode_always_normalises() -> None:
    assert vqa_accuracy("Yes", ["yes"] * 10, mode="lenient") == 1.0
    assert vqa_accuracy("red.", ["red"] * 10, mode="lenient") == 1.0
    with pytest.raises(ValueError, match="allowed: official, lenient"):
        vqa_accuracy("x", ["x"], mode="strict")  # type: ignore[arg-type]


def test_period_strip_stops_after_32_as_the_official_call_does() -> None:
    assert normalize_answer("." * 40) == "." * 8


# ---- A transcription of the official evaluator (vqaEval.py), kept deliberately literal. --------------------------
_period_strip = re.compile(r"(?!<=\d)(\.)(?!\d)")
_comma_strip = re.compile(r"(\d)(\,)(\d)")


def _official_punct(in_text: str) -> str:
    out_text = in_text
    for p in PUNCTUATION:
        if (p + " " in in_text or " " + p in in_text) or (re.search(_comma_strip, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return _period_strip.sub("", out_text, re.UNICODE)


def _official_digit_article(in_text: str) -> str:
    out_text = []
    for word in in_text.lower().split():
        word = dict(NUMBER_WORDS).setdefault(word, word)
        if word not in ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in CONTRACTIONS:
            out_text[word_id] = CONTRACTIONS[word]
    return " ".join(out_text)


def _official_accuracy(res_ans: str, gt_answers: list[str]) -> float:
    gts = [
        {"answer": a.replace("\n", " ").replace("\t", " ").strip(), "answer_id": i + 1}
        for i, a in enumerate(gt_answers)
    ]
    res_ans = res_ans.replace("\n", " ").replace("\t", " ").strip()
    if len({g["answer"] for g in gts}) > 1:
        for g in gts:
            g["answer"] = _official_digit_article(_official_punct(g["answer"]))
        res_ans = _official_digit_article(_official_punct(res_ans))
    gt_acc = []
    for gt in gts:
        other = [item for item in gts if item != gt]
        matching = [item for item in other if item["answer"] == res_ans]
        gt_acc.append(min(1, float(len(matching)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


_WORDS = [
    "yes",
    "no",
    "Yes",
    "2",
    "two",
    "3",
    "three",
    "none",
    "0",
    "the",
    "a",
    "dog",
    "Dog",
    "dont",
    "don't",
    "red",
    "1,000",
    "1000",
    "3.5",
    "35",
    "black/white",
    "black",
    "white",
    "it's",
    "its",
]
_PUNCT = [".", ",", "?", "!", "/", "-", " ", "  ", "\n", "(", ")", '"']
_answer = st.lists(st.one_of(st.sampled_from(_WORDS), st.sampled_from(_PUNCT)), min_size=1, max_size=4).map("".join)


@settings(max_examples=400, deadline=None)
@given(prediction=_answer, gts=st.lists(_answer, min_size=10, max_size=10))
def test_matches_the_official_evaluator_on_random_answers(prediction: str, gts: list[str]) -> None:
    assert vqa_accuracy(prediction, gts) == _official_accuracy(prediction, gts)


_picks = st.lists(st.integers(0, 2), min_size=10, max_size=10)


@settings(max_examples=200, deadline=None)
@given(prediction=_answer, pool=st.lists(_answer, min_size=1, max_size=3), picks=_picks)
def test_matches_the_official_evaluator_with_agreeing_annotators(
    prediction: str, pool: list[str], picks: list[int]
) -> None:
    # Few distinct GT answers, so matches (and the all-identical rule) actually occur.
    gts = [pool[i % len(pool)] for i in picks]
    assert vqa_accuracy(prediction, gts) == _official_accuracy(prediction, gts)
