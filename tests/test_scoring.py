"""Results scoring (official output format) and bootstrap statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leverplus.data.schemas import VQARecord
from leverplus.errors import DataError
from leverplus.metrics import bootstrap_ci, paired_bootstrap
from leverplus.metrics.scoring import parse_results, score_predictions


def _record(qid: int, answer_type: str, answers: list[str]) -> VQARecord:
    return VQARecord(
        question_id=qid,
        image_id=qid,
        split="val",
        question="q?",
        question_type="t",
        answer_type=answer_type,
        multiple_choice_answer=answers[0],
        answers=tuple(answers),
        image_key=f"val2014/{qid}.jpg",
    )


RECORDS = {
    1: _record(1, "yes/no", ["yes"] * 10),
    2: _record(2, "number", ["2"] * 3 + ["3"] * 7),
    3: _record(3, "other", ["dog"] * 5 + ["cat"] * 5),
}


def test_scores_overall_per_type_and_per_question_in_percent() -> None:
    result = score_predictions({1: "yes", 2: "two", 3: "bird"}, RECORDS)
    assert result["perQuestion"] == {"1": 100.0, "2": 90.0, "3": 0.0}
    assert result["perAnswerType"] == {"number": 90.0, "other": 0.0, "yes/no": 100.0}
    assert result["overall"] == round(100 * (1.0 + 0.9 + 0.0) / 3, 2) == 63.33


def test_unknown_question_ids_are_an_error() -> None:
    with pytest.raises(DataError, match=r"res\.json: 1 question_id\(s\) not in the annotations, e\.g\. \[99\]"):
        score_predictions({1: "yes", 99: "no"}, RECORDS, source="res.json")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"question_id": 1}', "expected a JSON list"),
        (b'[{"question_id": "1", "answer": "x"}]', "entry 0 must be"),
        (b'[{"question_id": 1, "answer": "x"}, {"question_id": 1, "answer": "y"}]', "question_id 1 appears more"),
    ],
)
def test_malformed_results_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_results(raw, "r.json")


def test_parse_results_reads_the_official_format() -> None:
    raw = json.dumps([{"question_id": 5, "answer": "a"}, {"question_id": 6, "answer": ""}]).encode()
    assert parse_results(raw, "r.json") == {5: "a", 6: ""}


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small = rng.binomial(1, 0.7, size=100).astype(float)
    large = rng.binomial(1, 0.7, size=2000).astype(float)
    lo_s, hi_s = bootstrap_ci(small, samples=2000)
    lo_l, hi_l = bootstrap_ci(large, samples=2000)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3
    # With 1,000 binary answers near 70 %, a 95 % interval is about +-2.8 points (DESIGN §2).
    lo, hi = bootstrap_ci(rng.binomial(1, 0.7, size=1000).astype(float), samples=4000)
    assert 0.045 < hi - lo < 0.066


def test_paired_bootstrap_detects_real_gains_and_not_noise() -> None:
    rng = np.random.default_rng(2)
    base = rng.binomial(1, 0.6, size=1000).astype(float)
    better = np.where(rng.random(1000) < 0.15, 1.0, base)  # flips ~15 % of answers to correct
    gain = paired_bootstrap(better, base)
    assert gain.delta > 0.04 and gain.significant and gain.p_value < 0.01
    same = paired_bootstrap(base, base.copy())
    assert same.delta == 0 and not same.significant
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1.0], [1.0, 0.0])
