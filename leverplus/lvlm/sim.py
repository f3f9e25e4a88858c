"""The simulated LVLM (`lvlm.backend: sim`) that makes the synthetic world a real experiment on a CPU.

It perceives what a real LVLM sees — images, questions, the ICDs' answers — through the `simple` encoder, and reads
the ground truth only to decide whether its answer is right. Its chance of answering correctly is

    p = sigmoid(BIAS + GAIN * relevance(ICDs, query) - difficulty(query))

  relevance   position-weighted mean over the ICDs of 0.7 * question cosine + 0.3 * image cosine; the ICD next
              to the query weighs most (order matters a little); with no ICDs a fixed baseline
  difficulty  a content-derived latent (hash of the question text and the image's embedding), plus a penalty for
              counting questions and for textured backgrounds

Whether it is right is a deterministic coin keyed by (seed, query, ICD sequence) whose marginal chance is exactly
p. Coins of one question are correlated across prompts (a Gaussian copula with correlation COIN_CORRELATION), as a
real model's errors on a question are: a prompt with a higher p is right whenever a worse one is, most of the time.
When wrong it gives a plausible
wrong answer of the right form (another answer seen for the same question type in the train split). `answer_prob`
is p itself.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from statistics import NormalDist

import numpy as np

from leverplus.data.schemas import VQARecord
from leverplus.features import FeatureTable
from leverplus.lvlm.base import Request, Response
from leverplus.metrics import vqa_accuracy

__all__ = ["SimLVLM"]

BIAS, GAIN = -2.0, 5.2
COIN_CORRELATION = 0.6
ZERO_SHOT_RELEVANCE = 0.3  # with no ICDs the model still knows the task, but not the answer format
QUESTION_WEIGHT = 0.7
POSITION_DECAY = 0.8  # each step further from the query weighs 0.8x
_TEXTURE_INDEX = -1  # last image feature of the simple encoder


_NORMAL = NormalDist()


def _unit_hash(*parts: object) -> float:
    """A deterministic uniform draw in (0, 1) keyed by parts."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def _coin(seed: int, question_id: int, sequence_key: str) -> float:
    """Uniform marginally; correlated across the prompts of one question through a shared normal term."""
    shared = _NORMAL.inv_cdf(_unit_hash("coin-question", seed, question_id))
    own = _NORMAL.inv_cdf(_unit_hash("coin-prompt", seed, question_id, sequence_key))
    rho = COIN_CORRELATION
    return _NORMAL.cdf(rho * shared + math.sqrt(1 - rho * rho) * own)


class SimLVLM:
    name = "sim"

    def __init__(self, perception: Iterable[FeatureTable], train_records: Iterable[VQARecord], seed: int = 0) -> None:
        self.tables = {t.split: t for t in perception}
        if any(t.encoder != "simple" for t in self.tables.values()):
            raise ValueError("the sim LVLM perceives through the simple encoder's features")
        self.seed = seed
        vocab: dict[str, Counter[str]] = defaultdict(Counter)
        for r in train_records:
            vocab[r.question_type][r.multiple_choice_answer] += 1
        self.vocab = {t: [a for a, _ in c.most_common()] for t, c in vocab.items()}

    def _vectors(self, record: VQARecord) -> tuple[np.ndarray, np.ndarray]:
        table = self.tables[record.split]
        row = table.rows([record.question_id])[0]
        return table.image[row], table.question[row]

    def relevance(self, query: VQARecord, icds: Sequence[VQARecord]) -> float:
        if not icds:
            return ZERO_SHOT_RELEVANCE
        q_img, q_txt = self._vectors(query)
        total = weight_sum = 0.0
        for distance, icd in enumerate(reversed(icds)):
            i_img, i_txt = self._vectors(icd)
            score = QUESTION_WEIGHT * float(q_txt @ i_txt) + (1 - QUESTION_WEIGHT) * float(q_img @ i_img)
            weight = POSITION_DECAY**distance
            total += weight * score
            weight_sum += weight
        return total / weight_sum

    def difficulty(self, query: VQARecord) -> float:
        image, _ = self._vectors(query)
        latent = 4.0 * (_unit_hash("difficulty", query.question, image.round(3).tobytes().hex()) - 0.5)
        counting = 0.6 if query.question.lower().startswith("how many") else 0.0
        return latent + counting + 1.5 * float(image[_TEXTURE_INDEX])

    def probability(self, query: VQARecord, icds: Sequence[VQARecord]) -> float:
        logit = BIAS + GAIN * self.relevance(query, icds) - self.difficulty(query)
        return 1.0 / (1.0 + math.exp(-logit))

    def _wrong_answer(self, query: VQARecord, key: str) -> str:
        """A plausible answer of the right form: among answers seen for this question type, one that scores least
        (zero where possible; on a yes/no question whose annotators disagree, the minority answer)."""
        options = self.vocab.get(query.question_type) or [query.multiple_choice_answer]
        scores = [vqa_accuracy(a, query.answers) for a in options]
        worst = [a for a, score in zip(options, scores, strict=True) if score == min(scores)]
        return worst[int(_unit_hash("wrong", key) * len(worst))]

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        responses = []
        for req in requests:
            p = self.probability(req.query, req.icds)
            sequence = ",".join(str(i.question_id) for i in req.icds)
            key = f"{self.seed}/{req.query.question_id}/{sequence}"
            right = _coin(self.seed, req.query.question_id, sequence) < p
            text = req.query.multiple_choice_answer if right else self._wrong_answer(req.query, key)
            responses.append(Response(prediction=text, answer_prob=p))
        return responses

    def answer_prob(self, requests: Sequence[Request]) -> list[float]:
        return [self.probability(r.query, r.icds) for r in requests]
