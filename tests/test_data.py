"""The VQAv2 loader and the synthetic world, on both store backends."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from leverplus.data import load_split
from leverplus.data.synth import synthesize
from leverplus.data.vqav2 import annotations_file, questions_file
from leverplus.errors import DataError
from leverplus.metrics import vqa_accuracy
from leverplus.store import LocalStore, Store

SIZES = {"train": 60, "val": 21}  # tiny: a few dozen images render in well under a second


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    synthesize(LocalStore(tmp_path / "a"), 7, SIZES)
    synthesize(LocalStore(tmp_path / "b"), 7, SIZES)
    synthesize(LocalStore(tmp_path / "c"), 8, SIZES)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert "train2014/COCO_train2014_000000000001.jpg" in a
    assert {questions_file("train"), annotations_file("val")} <= a.keys()


def test_synthetic_world_loads_with_official_layout(store: Store) -> None:
    synthesize(store, 0, SIZES)
    train = load_split(store, "train", check_images=True)
    val = load_split(store, "val", check_images=True)
    assert (len(train), len(val)) == (60, 21)
    assert set(train.records).isdisjoint(val.records)  # ids never collide across splits
    assert list(train.records) == sorted(train.records)
    record = next(iter(train))
    assert record.question_id == record.image_id * 1000
    image = train.load_image(record)
    assert image.mode == "RGB" and image.size == (224, 224)


def test_synthetic_answers_vary_like_annotators(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    synthesize(store, 1, {"train": 600})
    records = list(load_split(store, "train"))
    assert {r.answer_type for r in records} == {"yes/no", "number", "other"}
    types = Counter(r.answer_type for r in records)
    assert 0.25 < types["yes/no"] / len(records) < 0.5
    all_answers = [a for r in records for a in r.answers]
    assert any(a in ("two", "three", "four") for a in all_answers)  # number words
    assert any(a[:1].isupper() for a in all_answers)  # capitalisation
    assert any(a.endswith(".") for a in all_answers)  # trailing periods
    # The majority answer scores full marks, and annotators disagree on some questions.
    full_marks = sum(vqa_accuracy(r.multiple_choice_answer, r.answers) >= 0.9 for r in records)
    assert full_marks >= 0.97 * len(records)
    assert sum(len(set(r.answers)) > 1 for r in records) > len(records) / 3
    # Answers depend on image content: the same question has different answers across images.
    by_question: dict[str, set[str]] = {}
    for r in records:
        by_question.setdefault(r.question, set()).add(r.multiple_choice_answer)
    assert any(len(answers) > 1 for answers in by_question.values())


@pytest.fixture
def dataset(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "ds")
    synthesize(store, 0, {"val": 9})
    return store


def _edit(store: LocalStore, name: str, edit) -> None:
    doc = json.loads(store.get_bytes(name))
    edit(doc)
    store.put_bytes(name, json.dumps(doc).encode())


def _first_qid(store: LocalStore) -> int:
    return json.loads(store.get_bytes(questions_file("val")))["questions"][0]["question_id"]


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("ann", lambda d: d["annotations"][0]["answers"].pop(), r"question_id {qid}: expected 10 answers, got 9"),
        ("ann", lambda d: d["annotations"][0].update(answer_type="color"), r"question_id {qid}: answer_type 'color'"),
        ("ann", lambda d: d["annotations"].append(d["annotations"][0]), r"question_id {qid}: duplicate question_id"),
        ("q", lambda d: d["questions"].append(d["questions"][0]), r"question_id {qid}: duplicate question_id"),
        ("ann", lambda d: d["annotations"].pop(0), r"have no annotation, e\.g\. question_id {qid}"),
        ("ann", lambda d: d["annotations"][0].update(image_id=5), r"question_id {qid}: image_id 5 differs"),
        ("q", lambda d: d["questions"][0].pop("question"), r"question_id {qid}: needs int question_id"),
        ("q", lambda d: d.pop("questions"), r"expected an object with a 'questions' list"),
    ],
)
def test_malformed_records_name_file_and_question_id(dataset: LocalStore, file: str, edit, message: str) -> None:
    name = annotations_file("val") if file == "ann" else questions_file("val")
    qid = _first_qid(dataset)
    _edit(dataset, name, edit)
    with pytest.raises(DataError, match=name.replace(".", r"\.") + ".*" + message.format(qid=qid)):
        load_split(dataset, "val")


def test_missing_image_is_reported_when_checking(dataset: LocalStore) -> None:
    load_split(dataset, "val", check_images=True)
    dataset.delete("val2014/COCO_val2014_000000500001.jpg")
    load_split(dataset, "val")  # images load lazily: not checked unless asked
    with pytest.raises(DataError, match=r"COCO_val2014_000000500001\.jpg: image missing for question_id 500001000"):
        load_split(dataset, "val", check_images=True)


def test_bad_json_unknown_split_and_missing_files(dataset: LocalStore) -> None:
    dataset.put_bytes(annotations_file("val"), b'{"annotations": [')
    with pytest.raises(DataError, match=r"v2_mscoco_val2014_annotations\.json: not valid JSON"):
        load_split(dataset, "val")
    with pytest.raises(DataError, match="unknown split 'test'; allowed: train, val"):
        load_split(dataset, "test")
    with pytest.raises(DataError, match=r"v2_OpenEnded_mscoco_train2014_questions\.json: dataset file missing"):
        load_split(dataset, "train")


def test_corrupt_image_is_a_clear_error(dataset: LocalStore) -> None:
    split = load_split(dataset, "val")
    record = next(iter(split))
    dataset.put_bytes(record.image_key, b"not a jpeg")
    with pytest.raises(DataError, match="not a readable image"):
        split.load_image(record)
