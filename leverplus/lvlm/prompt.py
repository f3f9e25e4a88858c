"""The one prompt builder, used by InfoScore, candidate scoring and evaluation alike.

A system message, then one user turn interleaving [image_1, "Question: q_1 Short answer: a_1", ..., image_q,
"Question: q Short answer:"], rendered through the model's chat template with the generation prompt. Its hash goes
into every artifact; the report refuses to compare runs whose prompt hashes differ unless told to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["PROMPT_HASH", "build_messages", "postprocess_answer"]

SYSTEM_PROMPT = (
    "You answer questions about images. You will first see example images, each with a question and its short "
    "answer. Answer the final question in exactly the same style: one or two words, no sentence, no explanation."
)
ICD_TEMPLATE = "Question: {question} Short answer: {answer}"
QUERY_TEMPLATE = "Question: {question} Short answer:"
_STOP = re.compile(r"Question|Answer|Short")

PROMPT_HASH = hashlib.sha256(
    json.dumps({"system": SYSTEM_PROMPT, "icd": ICD_TEMPLATE, "query": QUERY_TEMPLATE, "cut": _STOP.pattern}).encode()
).hexdigest()[:16]


def build_messages(icds: Sequence[tuple[Any, str, str]], query_image: Any, question: str) -> list[dict[str, Any]]:
    """Chat messages for the processor. icds: (image, question, answer) in prompt order."""
    content: list[dict[str, Any]] = []
    for image, icd_question, answer in icds:
        content.append({"type": "image", "image": image})
        content.append({"type": "text", "text": ICD_TEMPLATE.format(question=icd_question, answer=answer)})
    content.append({"type": "image", "image": query_image})
    content.append({"type": "text", "text": QUERY_TEMPLATE.format(question=question)})
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": content},
    ]


def postprocess_answer(text: str) -> str:
    """Cut the generation at the first Question/Answer/Short, then at the first ', '."""
    return _STOP.split(text, maxsplit=1)[0].split(", ", 1)[0].strip()
