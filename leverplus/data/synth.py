"""The synthetic world: a VQAv2-format dataset whose answers depend on rendered image content.

Each image shows one to three groups of shapes (a shape, a colour, a count) on a plain or textured background.
Questions cover all three VQAv2 answer types ("Is there a red square?", "How many circles are there?",
"What color is the triangle?", "What shape is the blue object?"). Ten annotators answer each question with
realistic variation: number words vs digits, capitalisation, articles, trailing periods, synonyms and a minority
of wrong answers. Everything is a function of (seed, split, index), so the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from leverplus.data.palette import COLORS
from leverplus.data.vqav2 import annotations_file, image_key, questions_file
from leverplus.store import Store

if TYPE_CHECKING:
    from PIL import ImageDraw

__all__ = ["COLORS", "SHAPES", "Scene", "render_scene", "sample_scene", "synthesize"]

IMAGE_SIZE = 224
GRID = 4  # objects sit in distinct cells of a GRID x GRID layout, so they never overlap
QUESTIONS_PER_IMAGE = 3
SHAPES = ("circle", "square", "triangle", "diamond")
COLOR_SYNONYMS = {"purple": "violet", "orange": "tangerine", "green": "lime", "blue": "navy"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# First image id of each split, so ids never collide across splits (as in COCO).
_IMAGE_ID_BASE = {"train": 1, "val": 500_000}
# Share of each question family, close to VQAv2's answer-type mix (38 % yes/no, 12 % number, 50 % other).
_FAMILIES = (("exists", 0.38), ("count", 0.17), ("color", 0.25), ("shape", 0.20))


@dataclass(frozen=True)
class Group:
    shape: str
    color: str
    count: int


@dataclass(frozen=True)
class Scene:
    groups: tuple[Group, ...]
    background: tuple[int, int, int]
    texture: str  # plain | stripes | checker
    object_size: int  # pixels; smaller objects make harder images


def sample_scene(rng: random.Random) -> Scene:
    n_groups = rng.choice((1, 2, 2, 3))
    shapes = rng.sample(SHAPES, n_groups)
    colors = rng.sample(sorted(COLORS), n_groups)
    counts = [rng.randint(1, 4) for _ in range(n_groups)]
    groups = tuple(Group(s, c, n) for s, c, n in zip(shapes, colors, counts, strict=True))
    grey = rng.randint(200, 245)
    return Scene(
        groups=groups,
        background=(grey, grey - rng.randint(0, 12), grey - rng.randint(0, 12)),
        texture=rng.choice(("plain", "plain", "stripes", "checker")),
        object_size=rng.randint(22, 44),
    )


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, fill: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        h = int(r * math.sqrt(3) / 1.5)
        draw.polygon([(cx, cy - r), (cx - h, cy + r), (cx + h, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_texture(draw: ImageDraw.ImageDraw, scene: Scene) -> None:
    shade = tuple(max(0, c - 18) for c in scene.background)
    bands = 14
    step = IMAGE_SIZE // bands
    for i in range(bands):
        if scene.texture == "stripes" and i % 2 == 0:
            draw.rectangle((0, i * step, IMAGE_SIZE, (i + 1) * step), fill=shade)
        elif scene.texture == "checker":
            for j in range(i % 2, bands, 2):
                draw.rectangle((i * step, j * step, (i + 1) * step, (j + 1) * step), fill=shade)


def render_scene(scene: Scene, rng: random.Random) -> bytes:
    """JPEG bytes of the scene."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), scene.background)
    draw = ImageDraw.Draw(image)
    _draw_texture(draw, scene)
    cell = IMAGE_SIZE // GRID
    total = sum(g.count for g in scene.groups)
    cells = rng.sample(range(GRID * GRID), total)
    k = 0
    for group in scene.groups:
        for _ in range(group.count):
            row, col = divmod(cells[k], GRID)
            k += 1
            jitter = max(1, (cell - scene.object_size) // 2 - 1)
            cx = col * cell + cell // 2 + rng.randint(-jitter, jitter)
            cy = row * cell + cell // 2 + rng.randint(-jitter, jitter)
            _draw_shape(draw, group.shape, cx, cy, scene.object_size // 2, COLORS[group.color])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


@dataclass(frozen=True)
class QA:
    question: str
    question_type: str
    answer_type: str
    answer: str
    family: str


def _plural(shape: str) -> str:
    return shape + "s"


def _ask_exists(scene: Scene, rng: random.Random) -> QA:
    present = {(g.color, g.shape) for g in scene.groups}
    if rng.random() < 0.5:
        g = rng.choice(scene.groups)
        color, shape, answer = g.color, g.shape, "yes"
    else:
        absent = [(c, s) for c in sorted(COLORS) for s in SHAPES if (c, s) not in present]
        color, shape = rng.choice(absent)
        answer = "no"
    article = "an" if color[0] in "aeiou" else "a"
    return QA(f"Is there {article} {color} {shape}?", "is there a", "yes/no", answer, "exists")


def _ask_count(scene: Scene, rng: random.Random) -> QA:
    if rng.random() < 0.8:
        g = rng.choice(scene.groups)
        shape, count = g.shape, g.count
    else:
        shape, count = rng.choice([s for s in SHAPES if s not in {g.shape for g in scene.groups}]), 0
    return QA(f"How many {_plural(shape)} are there?", "how many", "number", str(count), "count")


def _ask_color(scene: Scene, rng: random.Random) -> QA:
    g = rng.choice(scene.groups)
    text = f"What color is the {g.shape}?" if g.count == 1 else f"What color are the {_plural(g.shape)}?"
    return QA(text, "what color is the", "other", g.color, "color")


def _ask_shape(scene: Scene, rng: random.Random) -> QA:
    g = rng.choice(scene.groups)
    text = f"What shape is the {g.color} object?" if g.count == 1 else f"What shape are the {g.color} objects?"
    return QA(text, "what shape is the", "other", g.shape, "shape")


_ASKERS: dict[str, Callable[[Scene, random.Random], QA]] = {
    "exists": _ask_exists,
    "count": _ask_count,
    "color": _ask_color,
    "shape": _ask_shape,
}


def _wrong_answer(qa: QA, rng: random.Random) -> str:
    if qa.family == "exists":
        return "no" if qa.answer == "yes" else "yes"
    if qa.family == "count":
        n = int(qa.answer)
        return str(max(0, n + rng.choice((-1, 1))) if n > 0 else 1)
    if qa.family == "color":
        return rng.choice([c for c in COLORS if c != qa.answer])
    return rng.choice([s for s in SHAPES if s != qa.answer])


def _variant(qa: QA, rng: random.Random) -> str:
    """A correct answer as one annotator might type it."""
    answer = qa.answer
    roll = rng.random()
    if qa.family == "count" and roll < 0.3:
        return NUMBER_WORDS[int(answer)]
    if qa.family == "color" and answer in COLOR_SYNONYMS and roll < 0.08:
        return COLOR_SYNONYMS[answer]
    if qa.family == "shape" and roll < 0.15:
        return "a " + answer
    if roll > 0.95:
        return answer.capitalize()
    if roll > 0.92:
        return answer + "."
    return answer


def _annotate(qa: QA, rng: random.Random, wrong_rate: float) -> list[dict[str, object]]:
    answers = []
    for i in range(10):
        text = _wrong_answer(qa, rng) if rng.random() < wrong_rate else _variant(qa, rng)
        confidence = rng.choices(("yes", "maybe", "no"), weights=(85, 12, 3))[0]
        answers.append({"answer": text, "answer_confidence": confidence, "answer_id": i + 1})
    return answers


def _image_records(seed: int, split: str, index: int, n_questions: int) -> tuple[int, bytes, list[QA], list]:
    rng = random.Random(f"leverplus-synth/{seed}/{split}/{index}")
    image_id = _IMAGE_ID_BASE[split] + index
    scene = sample_scene(rng)
    jpeg = render_scene(scene, rng)
    names, weights = zip(*_FAMILIES, strict=True)
    qas, annotations = [], []
    while len(qas) < n_questions:
        qa = _ASKERS[rng.choices(names, weights=weights)[0]](scene, rng)
        if any(qa.question == seen.question for seen in qas):
            continue  # one image never gets the same question twice
        # Smaller objects on busy backgrounds confuse annotators (and models) more often.
        wrong_rate = 0.02 + 0.05 * (scene.texture != "plain") + 0.04 * (scene.object_size < 30)
        qas.append(qa)
        annotations.append(_annotate(qa, rng, wrong_rate))
    return image_id, jpeg, qas, annotations


def _split_documents(
    seed: int, split: str, n_questions: int, store: Store, progress: Callable[[int], None]
) -> tuple[list[dict], list[dict]]:
    questions, annotations = [], []
    n_images = math.ceil(n_questions / QUESTIONS_PER_IMAGE)
    for index in range(n_images):
        n_here = min(QUESTIONS_PER_IMAGE, n_questions - index * QUESTIONS_PER_IMAGE)
        image_id, jpeg, qas, answer_lists = _image_records(seed, split, index, n_here)
        store.put_bytes(image_key(split, image_id), jpeg)
        for j, (qa, answers) in enumerate(zip(qas, answer_lists, strict=True)):
            qid = image_id * 1000 + j  # VQAv2's convention: image id times 1000 plus the question's index
            questions.append({"image_id": image_id, "question": qa.question, "question_id": qid})
            majority = Counter(a["answer"] for a in answers).most_common(1)[0][0]
            annotations.append(
                {
                    "question_type": qa.question_type,
                    "multiple_choice_answer": majority,
                    "answers": answers,
                    "image_id": image_id,
                    "answer_type": qa.answer_type,
                    "question_id": qid,
                }
            )
        progress(n_here)
    return questions, annotations


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def synthesize(
    store: Store,
    seed: int,
    sizes: dict[str, int],
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, int]:
    """Write the synthetic dataset under store with the official names and layout; returns questions per split.

    The JSON files are written after every image, so a dataset whose JSON exists is complete.
    """
    info = {"description": f"Lever-Plus synthetic VQAv2-format world (seed {seed})", "version": "1.0"}
    for split, n in sizes.items():
        questions, annotations = _split_documents(seed, split, n, store, progress)
        subtype = f"{split}2014"
        store.put_bytes(
            questions_file(split),
            _dump(
                {
                    "info": info,
                    "task_type": "Open-Ended",
                    "data_type": "mscoco",
                    "data_subtype": subtype,
                    "license": {"name": "CC BY 4.0"},
                    "questions": questions,
                }
            ),
        )
        store.put_bytes(
            annotations_file(split),
            _dump(
                {
                    "info": info,
                    "data_type": "mscoco",
                    "data_subtype": subtype,
                    "license": {"name": "CC BY 4.0"},
                    "annotations": annotations,
                }
            ),
        )
    return dict(sizes)
