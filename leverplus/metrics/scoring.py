"""Score a results file in the official format against VQAv2 questions/annotations, as the official evaluator
reports it: percentages rounded to 2 decimals, overall, per answer type and per question."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from leverplus.data.schemas import VQARecord
from leverplus.errors import DataError
from leverplus.metrics.vqa_accuracy import MetricMode, vqa_accuracy

__all__ = ["parse_results", "score_predictions"]

_DIGITS = 2  # the official evaluator's rounding


def parse_results(raw: bytes, source: str) -> dict[int, str]:
    """Official results: [{"question_id": int, "answer": str}, ...]. Duplicates and bad rows are errors."""
    try:
        rows = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise DataError(f"{source}: expected a JSON list of {{question_id, answer}} objects")
    answers: dict[int, str] = {}
    for i, row in enumerate(rows):
        qid = row.get("question_id") if isinstance(row, dict) else None
        answer = row.get("answer") if isinstance(row, dict) else None
        if not isinstance(qid, int) or isinstance(qid, bool) or not isinstance(answer, str):
            raise DataError(f'{source}: entry {i} must be {{"question_id": int, "answer": str}}')
        if qid in answers:
            raise DataError(f"{source}: question_id {qid} appears more than once")
        answers[qid] = answer
    return answers


def score_predictions(
    predictions: Mapping[int, str],
    records: Mapping[int, VQARecord],
    mode: MetricMode = "official",
    source: str = "results",
) -> dict[str, Any]:
    """{"overall", "perAnswerType", "perQuestion"} over the predicted questions; unknown ids are an error."""
    unknown = [qid for qid in predictions if qid not in records]
    if unknown:
        raise DataError(f"{source}: {len(unknown)} question_id(s) not in the annotations, e.g. {sorted(unknown)[:5]}")
    if not predictions:
        raise DataError(f"{source}: no results to score")
    per_question: dict[str, float] = {}
    by_type: dict[str, list[float]] = defaultdict(list)
    accuracies: list[float] = []
    for qid, answer in predictions.items():
        record = records[qid]
        acc = vqa_accuracy(answer, record.answers, mode)
        accuracies.append(acc)
        by_type[record.answer_type].append(acc)
        per_question[str(qid)] = round(100 * acc, _DIGITS)
    return {
        "overall": _percent(accuracies),
        "perAnswerType": {t: _percent(v) for t, v in sorted(by_type.items())},
        "perQuestion": per_question,
    }


def _percent(values: Iterable[float]) -> float:
    values = list(values)
    return round(100 * float(sum(values)) / len(values), _DIGITS)
