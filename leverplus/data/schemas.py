"""Records that cross process boundaries. Questions and ICDs are identified by VQAv2 question_id everywhere."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ANSWER_TYPES", "SPLITS", "AnswerType", "Split", "VQARecord"]

AnswerType = Literal["yes/no", "number", "other"]
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")
Split = Literal["train", "val"]
SPLITS: tuple[str, ...] = ("train", "val")


class VQARecord(BaseModel):
    """One VQAv2 question joined with its annotation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question_id: int
    image_id: int
    split: Split
    question: str
    question_type: str
    answer_type: AnswerType
    multiple_choice_answer: str
    answers: tuple[str, ...]  # the 10 human answers, in annotation order
    image_key: str  # relative to the dataset root, e.g. train2014/COCO_train2014_000000000009.jpg
