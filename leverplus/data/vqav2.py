"""VQAv2 in its official files, from a dataset root URI (local or S3):

    v2_OpenEnded_mscoco_{split}2014_questions.json
    v2_mscoco_{split}2014_annotations.json
    {split}2014/COCO_{split}2014_{image_id:012d}.jpg

Questions and annotations are joined by question_id and every record is validated; a malformed record raises a
DataError naming the file and question_id. Images load lazily.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leverplus.data.schemas import ANSWER_TYPES, SPLITS, VQARecord
from leverplus.errors import DataError, NotFoundError
from leverplus.store import Store, open_store

if TYPE_CHECKING:
    from PIL import Image

    from leverplus.config import StoreSettings

__all__ = [
    "ANSWERS_PER_QUESTION",
    "VQASplit",
    "annotations_file",
    "image_key",
    "load_question_files",
    "load_split",
    "questions_file",
]

ANSWERS_PER_QUESTION = 10


def questions_file(split: str) -> str:
    return f"v2_OpenEnded_mscoco_{split}2014_questions.json"


def annotations_file(split: str) -> str:
    return f"v2_mscoco_{split}2014_annotations.json"


def image_key(split: str, image_id: int) -> str:
    return f"{split}2014/COCO_{split}2014_{image_id:012d}.jpg"


@dataclass
class VQASplit:
    """One split's records, sorted by question_id, with lazy image access."""

    split: str
    store: Store
    records: dict[int, VQARecord]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[VQARecord]:
        return iter(self.records.values())

    def __getitem__(self, question_id: int) -> VQARecord:
        try:
            return self.records[question_id]
        except KeyError:
            raise DataError(f"question_id {question_id} is not in the {self.split} split of {self.store.uri}") from None

    def image_uri(self, record: VQARecord) -> str:
        return self.store.uri_for(record.image_key)

    def load_image(self, record: VQARecord) -> Image.Image:
        from PIL import Image, UnidentifiedImageError

        data = self.store.get_bytes(record.image_key)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{self.image_uri(record)}: not a readable image ({exc})") from exc

    def answer_type_counts(self) -> dict[str, int]:
        counts = Counter(r.answer_type for r in self)
        return {t: counts.get(t, 0) for t in ANSWER_TYPES}


def _read_json(store: Store, name: str) -> Any:
    try:
        raw = store.get_bytes(name)
    except NotFoundError as exc:
        raise DataError(f"{store.uri_for(name)}: dataset file missing") from exc
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{store.uri_for(name)}: not valid JSON ({exc})") from exc


def _list_field(doc: Any, field: str, source: str) -> list[Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get(field), list):
        raise DataError(f"{source}: expected an object with a {field!r} list")
    return doc[field]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_questions(doc: Any, source: str) -> dict[int, dict[str, Any]]:
    questions: dict[int, dict[str, Any]] = {}
    for i, q in enumerate(_list_field(doc, "questions", source)):
        qid = q.get("question_id") if isinstance(q, dict) else None
        where = f"{source}: question_id {qid}" if _is_int(qid) else f"{source}: entry {i}"
        if not _is_int(qid) or not _is_int(q.get("image_id")) or not isinstance(q.get("question"), str):
            raise DataError(f"{where}: needs int question_id, int image_id and str question")
        if not q["question"].strip():
            raise DataError(f"{where}: empty question")
        if qid in questions:
            raise DataError(f"{where}: duplicate question_id")
        questions[qid] = q
    return questions


def _check_annotation(a: Any, source: str, index: int) -> int:
    qid = a.get("question_id") if isinstance(a, dict) else None
    if not _is_int(qid):
        raise DataError(f"{source}: entry {index}: missing or non-integer question_id")
    where = f"{source}: question_id {qid}"
    answers = a.get("answers")
    if not isinstance(answers, list) or len(answers) != ANSWERS_PER_QUESTION:
        got = len(answers) if isinstance(answers, list) else type(answers).__name__
        raise DataError(f"{where}: expected {ANSWERS_PER_QUESTION} answers, got {got}")
    if not all(isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers):
        raise DataError(f"{where}: every answer needs a str 'answer' field")
    if a.get("answer_type") not in ANSWER_TYPES:
        raise DataError(f"{where}: answer_type {a.get('answer_type')!r} is not one of {', '.join(ANSWER_TYPES)}")
    for field in ("question_type", "multiple_choice_answer"):
        if not isinstance(a.get(field), str):
            raise DataError(f"{where}: missing or non-string {field}")
    if not _is_int(a.get("image_id")):
        raise DataError(f"{where}: missing or non-integer image_id")
    return qid


def _join(
    split: str, questions: dict[int, dict[str, Any]], q_source: str, ann_doc: Any, ann_source: str
) -> dict[int, VQARecord]:
    """Annotations joined to their questions; a disagreement names both files (either may be the damaged one)."""
    records: dict[int, VQARecord] = {}
    for i, a in enumerate(_list_field(ann_doc, "annotations", ann_source)):
        qid = _check_annotation(a, ann_source, i)
        if qid in records:
            raise DataError(f"{ann_source}: question_id {qid}: duplicate question_id")
        q = questions.get(qid)
        if q is None:
            raise DataError(f"{ann_source}: question_id {qid}: no such question in {q_source}")
        if q["image_id"] != a["image_id"]:
            raise DataError(
                f"{ann_source}: question_id {qid}: image_id {a['image_id']} differs from {q['image_id']} in {q_source}"
            )
        records[qid] = VQARecord(
            question_id=qid,
            image_id=q["image_id"],
            split=split,  # type: ignore[arg-type]
            question=q["question"],
            question_type=a["question_type"],
            answer_type=a["answer_type"],
            multiple_choice_answer=a["multiple_choice_answer"],
            answers=tuple(x["answer"] for x in a["answers"]),
            image_key=image_key(split, q["image_id"]),
        )
    missing = sorted(set(questions) - set(records))
    if missing:
        raise DataError(
            f"{ann_source}: {len(missing)} question(s) of {q_source} have no annotation, e.g. question_id {missing[0]}"
        )
    return dict(sorted(records.items()))


def _check_images(split: str, store: Store, records: dict[int, VQARecord]) -> None:
    present = set(store.list(f"{split}2014/"))  # one listing instead of one request per image
    for record in records.values():
        if record.image_key not in present:
            raise DataError(f"{store.uri_for(record.image_key)}: image missing for question_id {record.question_id}")


def load_split(
    root: str | Store, split: str, *, check_images: bool = False, settings: StoreSettings | None = None
) -> VQASplit:
    """Load and validate one split ("train" or "val") from a dataset root URI or store."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    store = root if isinstance(root, Store) else open_store(root, settings)
    q_name, a_name = questions_file(split), annotations_file(split)
    questions = _parse_questions(_read_json(store, q_name), store.uri_for(q_name))
    records = _join(split, questions, store.uri_for(q_name), _read_json(store, a_name), store.uri_for(a_name))
    if check_images:
        _check_images(split, store, records)
    return VQASplit(split=split, store=store, records=records)


def load_question_files(
    questions_uri: str, annotations_uri: str, settings: StoreSettings | None = None
) -> dict[int, VQARecord]:
    """Records from a questions file and an annotations file at any URIs (e.g. for scoring a results file)."""
    from leverplus.store import open_object

    q_store, q_name = open_object(questions_uri, settings)
    a_store, a_name = open_object(annotations_uri, settings)
    ann_doc = _read_json(a_store, a_name)
    subtype = str(ann_doc.get("data_subtype", "")) if isinstance(ann_doc, dict) else ""
    split = subtype.removesuffix("2014") if subtype.removesuffix("2014") in SPLITS else "val"
    questions = _parse_questions(_read_json(q_store, q_name), q_store.uri_for(q_name))
    return _join(split, questions, q_store.uri_for(q_name), ann_doc, a_store.uri_for(a_name))
