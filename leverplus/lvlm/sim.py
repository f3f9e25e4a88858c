"""The simulated LVLM (`lvlm.backend: sim`) that makes the synthetic world a real experiment on a CPU.

It perceives what a real LVLM sees — images, questions, the ICDs' answers — through the `simple` encoder, and reads
the ground truth only to decide whether its answer is right. Its parameters (`SimParams`) are fixed before any RL
run and versioned (`SIM_VERSION`); the version is part of the LVLM id recorded with every scored group.

    content = QUESTION_GAIN * max_i qcos_i + IMAGE_GAIN * coverage(ICD images, query image) - difficulty
    p_prob  = sigmoid(BIAS + content)                        what teacher-forcing the answer sees (`answer_prob`)
    p_gen   = sigmoid(BIAS + content - TYPE_MISMATCH * [answer type of the ICD next to the query != the query's])

Three kinds of structure, each reported in the ICL literature, that a single similarity ranking cannot capture:

- **complementarity**: the best question match counts on its own (a max over ICDs, not a mean of joint cosines),
  and the image term is *coverage*: the share of the query image's content (per feature of the simple encoder:
  colour area, occupancy, shape fill) that some ICD shows. One ICD may show the red squares and another the blue
  circles of the query's scene; together they cover it. The best set therefore often combines ICDs that are not
  the joint top-k; a selector that conditions on its earlier picks can learn this, a cosine ranking cannot;
- **redundancy**: a near-duplicate of an ICD already chosen raises neither the max nor the coverage, so it adds
  nothing (learned selection "balances relevance with diversity"); every further well-chosen shot can only help
  (neither term ever falls), and on this world more shots help as they do on VQAv2;
- **format copying**: the generated answer copies the answer type of the demonstration next to the query (a yes/no
  demonstration before a colour question invites "yes"). Teacher-forced `answer_prob` does not see it — the answer
  is given, not generated — so InfoScore (built on answer_prob) is blind to it and only rewards from generated
  answers (RL) can teach it. Order matters only through this effect.

Whether it is right is a deterministic coin keyed by (seed, query, ICD sequence) whose marginal chance is exactly
p_gen; coins of one question are correlated across prompts (a Gaussian copula), as a real model's errors on one
question are. When wrong it gives a plausible wrong answer of the right form (the least-accurate answer seen for
the question type in the train split). `expected_accuracy` is the noise-free value the report's ceilings use.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from leverplus.data.schemas import VQARecord
from leverplus.features import FeatureTable
from leverplus.lvlm.base import Request, Response
from leverplus.metrics import vqa_accuracy

__all__ = ["SIM_PARAMS", "SIM_VERSION", "SimLVLM", "SimParams"]

SIM_VERSION = "sim-v2"


@dataclass(frozen=True)
class SimParams:
    """Fixed before any RL run; changing one is a new SIM_VERSION (it changes what every scored group means)."""

    bias: float = -3.4  # logit offset
    question_gain: float = 1.8  # weight of the best question cosine among the ICDs
    image_gain: float = 4.5  # weight of the share of the query image's content that the ICDs show
    zero_shot_cosine: float = 0.3  # floor of both terms: what the model knows with no ICD
    type_mismatch: float = 1.6  # generated answers copy the answer type of the ICD next to the query
    coin_correlation: float = 0.6
    counting_penalty: float = 0.6
    texture_penalty: float = 1.5

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


SIM_PARAMS = SimParams()
_TEXTURE_INDEX = -1  # last image feature of the simple encoder
_NORMAL = NormalDist()


def _unit_hash(*parts: object) -> float:
    """A deterministic uniform draw in (0, 1) keyed by parts."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def _coin(seed: int, question_id: int, sequence_key: str, rho: float) -> float:
    """Uniform marginally; correlated across the prompts of one question through a shared normal term."""
    shared = _NORMAL.inv_cdf(_unit_hash("coin-question", seed, question_id))
    own = _NORMAL.inv_cdf(_unit_hash("coin-prompt", seed, question_id, sequence_key))
    return _NORMAL.cdf(rho * shared + math.sqrt(1 - rho * rho) * own)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class SimLVLM:
    def __init__(
        self,
        perception: Iterable[FeatureTable],
        train_records: Iterable[VQARecord],
        seed: int = 0,
        params: SimParams = SIM_PARAMS,
    ) -> None:
        self.tables = {t.split: t for t in perception}
        if any(t.encoder != "simple" for t in self.tables.values()):
            raise ValueError("the sim LVLM perceives through the simple encoder's features")
        self.seed, self.params = seed, params
        self.name = f"{SIM_VERSION}/seed{seed}"
        vocab: dict[str, Counter[str]] = defaultdict(Counter)
        for r in train_records:
            vocab[r.question_type][r.multiple_choice_answer] += 1
        self.vocab = {t: [a for a, _ in c.most_common()] for t, c in vocab.items()}
        # Per record, computed once: what the model perceives of it, and a query's difficulty and the accuracy of its
        # right and wrong answers (the searches behind InfoScore and the ceilings ask for them thousands of times).
        self._seen: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._difficulty: dict[tuple[str, int], float] = {}
        self._scores: dict[tuple[str, int], tuple[float, float]] = {}
        self._wrong: dict[int, str] = {}

    def _vectors(self, record: VQARecord) -> tuple[np.ndarray, np.ndarray]:
        key = (record.split, record.question_id)
        if key not in self._seen:
            table = self.tables[record.split]
            row = table.rows([record.question_id])[0]
            self._seen[key] = (table.image[row], table.question[row])
        return self._seen[key]

    def logits(self, query: VQARecord, pool: Sequence[VQARecord], seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Content logit (what teacher forcing sees) and generation logit for sequences of pool indices in prompt
        order. seqs (N, k) -> two (N,) arrays. One definition serves single prompts and the ceilings' searches."""
        prm = self.params
        q_img, q_txt = self._vectors(query)
        n, k = seqs.shape
        base = prm.bias - self.difficulty(query)
        if k == 0:
            content = np.full(n, base + (prm.question_gain + prm.image_gain) * prm.zero_shot_cosine)
            return content, content
        vectors = [self._vectors(r) for r in pool]
        qcos = np.array([float(q_txt @ t) for _, t in vectors])  # (P,)
        images = np.stack([i for i, _ in vectors])  # (P, Di), non-negative
        mismatch = np.array([r.answer_type != query.answer_type for r in pool])  # (P,)
        best_q = np.maximum(qcos[seqs].max(axis=1), prm.zero_shot_cosine)  # (N,)
        # Share of the query image's content that some ICD shows: each ICD covers what it has in common with the
        # query (per feature, the smaller value); a set covers the best of each feature over its ICDs.
        shown = np.minimum(images[seqs].max(axis=1), q_img[None, :]).sum(axis=1)  # (N,)
        best_i = np.maximum(shown / max(float(q_img.sum()), 1e-9), prm.zero_shot_cosine)  # (N,)
        content = base + prm.question_gain * best_q + prm.image_gain * best_i
        return content, content - prm.type_mismatch * mismatch[seqs[:, -1]]

    def difficulty(self, query: VQARecord) -> float:
        key = (query.split, query.question_id)
        if key not in self._difficulty:
            image, _ = self._vectors(query)
            latent = 4.0 * (_unit_hash("difficulty", query.question, image.round(3).tobytes().hex()) - 0.5)
            counting = self.params.counting_penalty if query.question.lower().startswith("how many") else 0.0
            self._difficulty[key] = latent + counting + self.params.texture_penalty * float(image[_TEXTURE_INDEX])
        return self._difficulty[key]

    def _one(self, query: VQARecord, icds: Sequence[VQARecord]) -> tuple[float, float]:
        content, generation = self.logits(query, icds, np.arange(len(icds))[None, :])
        return float(content[0]), float(generation[0])

    def probability(self, query: VQARecord, icds: Sequence[VQARecord]) -> float:
        """Chance that the generated answer is right."""
        return _sigmoid(self._one(query, icds)[1])

    def answer_probability(self, query: VQARecord, icds: Sequence[VQARecord]) -> float:
        """Teacher-forced probability of the ground-truth answer: blind to format copying."""
        return _sigmoid(self._one(query, icds)[0])

    def expected_accuracy_many(self, query: VQARecord, pool: Sequence[VQARecord], seqs: np.ndarray) -> np.ndarray:
        """Noise-free expected VQA accuracy of the generated answer, for sequences of pool indices. -> (N,)"""
        p = 1.0 / (1.0 + np.exp(-self.logits(query, pool, seqs)[1]))
        right, wrong = self._answer_scores(query)
        return p * right + (1 - p) * wrong

    def _answer_scores(self, query: VQARecord) -> tuple[float, float]:
        """VQA accuracy of the answer given when right, and of the one given when wrong."""
        key = (query.split, query.question_id)
        if key not in self._scores:
            right = vqa_accuracy(query.multiple_choice_answer, query.answers)
            self._scores[key] = right, vqa_accuracy(self._wrong_answer(query), query.answers)
        return self._scores[key]

    def expected_accuracy(self, query: VQARecord, icds: Sequence[VQARecord]) -> float:
        return float(self.expected_accuracy_many(query, icds, np.arange(len(icds))[None, :])[0])

    def _wrong_answer(self, query: VQARecord) -> str:
        """A plausible answer of the right form: among answers seen for this question type, one that scores least
        (zero where possible; on a yes/no question whose annotators disagree, the minority answer)."""
        if query.question_id not in self._wrong:
            options = self.vocab.get(query.question_type) or [query.multiple_choice_answer]
            scores = [vqa_accuracy(a, query.answers) for a in options]
            worst = [a for a, score in zip(options, scores, strict=True) if score == min(scores)]
            self._wrong[query.question_id] = worst[int(_unit_hash("wrong", self.seed, query.question_id) * len(worst))]
        return self._wrong[query.question_id]

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        responses = []
        for req in requests:
            content, generation = self._one(req.query, req.icds)  # one pass gives both probabilities
            sequence = ",".join(str(i.question_id) for i in req.icds)
            coin = _coin(self.seed, req.query.question_id, sequence, self.params.coin_correlation)
            right = coin < _sigmoid(generation)
            text = req.query.multiple_choice_answer if right else self._wrong_answer(req.query)
            responses.append(Response(prediction=text, answer_prob=_sigmoid(content)))
        return responses

    def answer_prob(self, requests: Sequence[Request]) -> list[float]:
        """Teacher-forced probabilities; each run of requests with one query and one ICD count is one `logits` call
        over the ICDs they use (the same values as one call per request)."""
        out: list[float] = []
        start = 0
        while start < len(requests):
            query, k = requests[start].query, len(requests[start].icds)
            end = start + 1
            while end < len(requests) and requests[end].query is query and len(requests[end].icds) == k:
                end += 1
            pool: dict[tuple[str, int], int] = {}  # (split, question_id) -> index into the ICDs the run uses
            items: list[VQARecord] = []
            seqs = np.zeros((end - start, k), dtype=np.int64)
            for row, req in enumerate(requests[start:end]):
                for col, icd in enumerate(req.icds):
                    if (icd.split, icd.question_id) not in pool:
                        pool[icd.split, icd.question_id] = len(items)
                        items.append(icd)
                    seqs[row, col] = pool[icd.split, icd.question_id]
            out += [_sigmoid(float(c)) for c in self.logits(query, items, seqs)[0]]
            start = end
        return out
