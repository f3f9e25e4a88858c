"""Results scoring (official output format) and bootstrap statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leverplus.data.schemas import VQARecord
from leverplus.errors import DataError
from leverplus.metrics import bootstrap_ci, holm_paired, paired_bootstrap
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
    ids = range(1000, 2000)
    gain = paired_bootstrap(dict(zip(ids, better, strict=True)), dict(zip(ids, base, strict=True)))
    assert gain.delta > 0.04 and gain.significant and gain.p_value < 0.01
    same = paired_bootstrap(dict(zip(ids, base, strict=True)), dict(zip(ids, base, strict=True)))
    assert same.delta == 0 and not same.significant


def test_a_paired_test_refuses_different_question_ids() -> None:
    """Equal lengths are not enough: the two systems must have answered the very same questions."""
    with pytest.raises(ValueError, match=r"same non-empty question ids on both sides; differing: \[3, 4\]"):
        paired_bootstrap({1: 1.0, 3: 0.0}, {1: 1.0, 4: 0.0})
    with pytest.raises(ValueError, match="same non-empty"):
        paired_bootstrap({}, {})


def test_holm_correction_widens_intervals_and_steps_down() -> None:
    """Four shot counts: the smallest p is judged at 1 - 0.05/4, the next at 1 - 0.05/3, ...; a gain that is
    significant alone can be within noise once corrected, and after the first non-rejection none is rejected."""
    rng = np.random.default_rng(5)
    ids = range(400)
    base = rng.binomial(1, 0.6, size=400).astype(float)

    def lifted(share: float, seed: int) -> dict[int, float]:
        flips = np.random.default_rng(seed).random(400) < share
        return dict(zip(ids, np.where(flips, 1.0, base), strict=True))

    family = {
        "1": (lifted(0.2, 1), dict(zip(ids, base, strict=True))),
        "2": (lifted(0.025, 2), dict(zip(ids, base, strict=True))),
    }
    family |= {
        "3": (dict(zip(ids, base, strict=True)), dict(zip(ids, base, strict=True))),
        "4": (lifted(0.02, 4), dict(zip(ids, base, strict=True))),
    }
    corrected = holm_paired(family, samples=4000)
    alone = {k: paired_bootstrap(a, b, samples=4000) for k, (a, b) in family.items()}
    assert corrected["1"].significant and corrected["1"].level == pytest.approx(1 - 0.05 / 4)
    for k in family:
        lo, hi = corrected[k].ci95
        assert lo <= alone[k].ci95[0] + 1e-12 and hi >= alone[k].ci95[1] - 1e-12  # never narrower
        assert corrected[k].p_holm >= alone[k].p_value
    order = sorted(family, key=lambda k: corrected[k].p_value)
    verdicts = [corrected[k].significant for k in order]
    assert verdicts == sorted(verdicts, reverse=True)  # step-down: no rejection after a non-rejection
    assert not corrected["3"].significant
