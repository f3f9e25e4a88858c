"""The transformers backend (`lvlm.backend: hf`): any image-text-to-text model with its processor; Qwen2-VL and
Qwen2.5-VL get the fast path.

Prompts come from the one prompt builder through the model's chat template. Generation is greedy or beam search
(`lvlm.num_beams`, length_penalty 0 as in the lab) for `lvlm.max_new_tokens` tokens, left-padded, then cut by
`postprocess_answer`.

Fast path (what makes a round affordable):
  - each image's vision-encoder output is computed once and reused from a bounded LRU (VisionCache);
  - the text is tokenised without the processor: each <|image_pad|> is expanded to the image's token count from
    its cached grid (ids identical to the processor's), so images are never re-preprocessed;
  - prompts are sorted by length and batched (`lvlm.batch_size`), so padding is small;
  - on CUDA out-of-memory the batch is halved and retried, and the log says so.

`answer_prob` is the teacher-forced probability of the ground-truth answer — VQAv2's `multiple_choice_answer` —
after the generation prompt, as DESIGN §3 defines it: exp(-mean token cross-entropy over the answer's tokens), the
geometric mean of P(token | prompt, earlier answer tokens). A product would rank multi-token answers below
one-token ones by their length alone, across beams and in the hard_plus_prob reward.
The span is exactly the answer's tokens; the end-of-turn token is NOT included, so P("red") also counts the
model going on to say "red car" (the lab's InfoScore scored the answer text alone).

`answer_naive` is the reference a researcher would write (one prompt at a time, the processor on raw images,
plain `generate`); the equality test and the throughput benchmark compare the fast path with it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import GenerationConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling

from leverplus.config import LVLMSettings
from leverplus.data.schemas import VQARecord
from leverplus.errors import LeverPlusError
from leverplus.log import get_logger
from leverplus.lvlm.base import Request, Response
from leverplus.lvlm.prompt import build_messages, postprocess_answer
from leverplus.lvlm.vision_cache import VisionCache

__all__ = ["HFLVLM"]

ImageLoader = Callable[[VQARecord], Image.Image]
# Models whose vision output is exactly `pooler_output` per image and whose prompts expand one placeholder per
# merged patch: the fast path is checked against the naive one for these. Others (Qwen3-VL adds deepstack
# features, LLaVA-style models differ) use the processor path, batched but uncached.
FAST_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


@dataclass
class Encoded:
    """One left-padded batch: model inputs, and for answer_prob the answer's token count per row."""

    inputs: dict[str, Any]
    answer_lengths: list[int] = field(default_factory=list)


class HFLVLM:
    def __init__(self, model: Any, processor: Any, load_image: ImageLoader, settings: LVLMSettings) -> None:
        self.model, self.processor, self.load_image = model, processor, load_image
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # batched generation continues every row from its last token
        self.settings = settings
        self.name = f"hf:{settings.model}"
        self.log = get_logger().bind(lvlm=self.name)
        self.batch_size = settings.batch_size
        self.image_token: str = processor.image_token
        self.image_token_id: int = self.tokenizer.convert_tokens_to_ids(self.image_token)
        processor.image_processor.size = {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels}
        self.fast = model.config.model_type in FAST_MODEL_TYPES
        self.vision = VisionCache(model, processor.image_processor, load_image, settings.vision_cache_images)
        self.generation = self._generation_config()

    # ---- the LVLM interface -------------------------------------------------------------------------------------

    def answer(self, requests: Sequence[Request]) -> list[Response]:
        texts = self._in_batches(requests, with_answer=False, run=self._generate)
        return [Response(prediction=postprocess_answer(t), answer_prob=None) for t in texts]

    def answer_prob(self, requests: Sequence[Request]) -> list[float]:
        return self._in_batches(requests, with_answer=True, run=self._answer_prob)

    def answer_naive(self, requests: Sequence[Request]) -> list[Response]:
        """One prompt at a time through the processor on raw images; no cache, no batching."""
        out = []
        for request in requests:
            enc = self._processor_batch([request], with_answer=False)
            out.append(Response(prediction=postprocess_answer(self._generate(enc)[0]), answer_prob=None))
        return out

    # ---- batching -----------------------------------------------------------------------------------------------

    def _in_batches(self, requests: Sequence[Request], with_answer: bool, run: Callable[[Encoded], list]) -> list:
        order = self._length_order(requests)
        results: list[Any] = [None] * len(requests)
        done = 0
        while done < len(order):
            rows = order[done : done + self.batch_size]
            batch = [requests[i] for i in rows]
            try:
                enc = self._cached_batch(batch, with_answer) if self.fast else self._processor_batch(batch, with_answer)
                outputs = run(enc)
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                torch.cuda.empty_cache()
                self.log.warning("out of GPU memory: halving the batch and retrying", batch_size=self.batch_size)
                continue
            for i, out in zip(rows, outputs, strict=True):
                results[i] = out
            done += len(rows)
        return results

    def _length_order(self, requests: Sequence[Request]) -> list[int]:
        """Shortest prompts first, so each batch holds prompts of similar length (little padding)."""
        if not self.fast:
            return list(range(len(requests)))
        self.vision.features([r for q in requests for r in _images(q)])  # encode what is new in few large calls
        lengths = [sum(self.vision.tokens(r) for r in _images(q)) + _text_size(q) for q in requests]
        return sorted(range(len(requests)), key=lambda i: lengths[i])

    # ---- encoding -----------------------------------------------------------------------------------------------

    def _prompt_text(self, request: Request, with_answer: bool) -> str:
        icds = [(r.image_key, r.question, r.multiple_choice_answer) for r in request.icds]
        messages = build_messages(icds, request.query.image_key, request.query.question)
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + request.query.multiple_choice_answer if with_answer else text

    def _cached_batch(self, requests: Sequence[Request], with_answer: bool) -> Encoded:
        """Token ids with each image placeholder expanded from its cached grid, plus cached vision features."""
        records = [r for q in requests for r in _images(q)]
        features = self.vision.features(records)
        rows = self.tokenizer([self._prompt_text(r, with_answer) for r in requests])["input_ids"]
        rows = [
            self._expand_images(ids, [self.vision.tokens(r) for r in _images(q)])
            for ids, q in zip(rows, requests, strict=True)
        ]
        width = max(map(len, rows))
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):  # left padding
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention_mask[i, width - len(ids) :] = 1
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_token_id).int(),
            "image_grid_thw": torch.tensor([self.vision.grid(r) for r in records]),
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=tuple(features))},
        }
        return self._finish(inputs, requests, with_answer)

    def _expand_images(self, ids: list[int], counts: list[int]) -> list[int]:
        """Repeat each image placeholder id as many times as its image has tokens (what the processor does)."""
        if ids.count(self.image_token_id) != len(counts):
            raise LeverPlusError(
                f"{self.name}: the chat template produced {ids.count(self.image_token_id)} image placeholders "
                f"for a prompt with {len(counts)} images"
            )
        out: list[int] = []
        remaining = iter(counts)
        for token in ids:
            out.extend([token] * next(remaining) if token == self.image_token_id else [token])
        return out

    def _processor_batch(self, requests: Sequence[Request], with_answer: bool) -> Encoded:
        """The plain way: the processor preprocesses every image of every prompt."""
        texts = [self._prompt_text(r, with_answer) for r in requests]
        images = [self.load_image(r) for q in requests for r in _images(q)]
        inputs = dict(self.processor(text=texts, images=images, padding=True, return_tensors="pt"))
        return self._finish(inputs, requests, with_answer)

    def _finish(self, inputs: dict[str, Any], requests: Sequence[Request], with_answer: bool) -> Encoded:
        inputs = {k: v.to(self.model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        if not with_answer:
            return Encoded(inputs)
        lengths = []
        for row, request in enumerate(requests):
            answer = self.tokenizer(request.query.multiple_choice_answer, add_special_tokens=False)["input_ids"]
            tail = inputs["input_ids"][row, len(inputs["input_ids"][row]) - len(answer) :].tolist()
            if tail != answer:  # the answer merged with the prompt's last token: its span would be wrong
                raise LeverPlusError(
                    f"question_id {request.query.question_id}: answer {request.query.multiple_choice_answer!r} "
                    "does not tokenise to the same ids after the prompt; cannot score its probability"
                )
            lengths.append(len(answer))
        return Encoded(inputs, lengths)

    # ---- model calls --------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _generate(self, enc: Encoded) -> list[str]:
        inputs = enc.inputs
        if self.fast and self.generation.num_beams > 1:
            inputs = self._prefill_once(inputs)
        ids = self.model.generate(**inputs, generation_config=self.generation)
        return self.tokenizer.batch_decode(ids[:, enc.inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def _prefill_once(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Beam search starts every beam from the same prompt, yet `generate` prefills each prompt once per beam.
        Prefill all but the last prompt token once and hand `generate` the cache repeated per beam: it then runs
        only the last token, and the tokens it produces are identical (the equality test checks it)."""
        head = {k: v[:, :-1] for k, v in inputs.items() if k in ("input_ids", "attention_mask", "mm_token_type_ids")}
        out = self.model(**{**inputs, **head}, use_cache=True, logits_to_keep=1)
        cache = out.cache
        cache.batch_repeat_interleave(self.generation.num_beams)
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "cache": cache}

    @torch.inference_mode()
    def _answer_prob(self, enc: Encoded) -> list[float]:
        span = max(enc.answer_lengths)
        logits = self.model(**enc.inputs, use_cache=False, logits_to_keep=span + 1).logits.float()
        # logits[:, j] predicts the token after kept position j; the answer is the last `a` tokens of each row.
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = enc.inputs["input_ids"][:, -span:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return [float(token_lp[row, span - a :].mean().exp()) for row, a in enumerate(enc.answer_lengths)]

    def _generation_config(self) -> GenerationConfig:
        """The model's own generation config (e.g. Qwen's repetition_penalty 1.05, as the lab's `generate` got it),
        made deterministic: no sampling, `lvlm.num_beams` beams with length_penalty 0, `lvlm.max_new_tokens`."""
        config = copy.deepcopy(self.model.generation_config)
        beams = {"num_beams": self.settings.num_beams, "length_penalty": 0.0} if self.settings.num_beams > 1 else {}
        config.update(
            max_new_tokens=self.settings.max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None
        )
        config.update(**({"num_beams": 1, "length_penalty": 1.0} | beams))
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        return config


def _images(request: Request) -> list[VQARecord]:
    """The prompt's images in order: the ICDs', then the query's."""
    return [*request.icds, request.query]


def _text_size(request: Request) -> int:
    return sum(len(r.question) + len(r.multiple_choice_answer) for r in _images(request))


def load_hf(settings: LVLMSettings, load_image: ImageLoader, device: str = "cpu", store: Any = None) -> HFLVLM:
    """The model and processor named by `lvlm.model`, on `device`: bf16 with SDPA (flash-attention when installed)
    on CUDA, fp32 on CPU. Unknown ids, models without image input and missing files are ConfigErrors."""
    import importlib.util

    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from leverplus.errors import ConfigError
    from leverplus.lvlm.model_source import resolve_model

    source = resolve_model(settings.model, settings.cache_dir, store)
    transformers.utils.logging.disable_progress_bar()  # our own log lines say what is loading; pods need no bars
    get_logger().info("loading the LVLM", model=settings.model, device=device)
    cuda = device.startswith("cuda")
    attention = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    where = f"lvlm.model {settings.model}"
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation=attention
        )
    except ValueError as exc:  # transformers' "Unrecognized configuration class" for text-only models
        raise ConfigError(f"{where}: not an image-text-to-text model ({_first_line(exc)})") from exc
    except OSError as exc:  # missing directory, missing files, unknown hub id (or no network)
        raise ConfigError(f"{where}: cannot load it ({_first_line(exc)})") from exc
    if getattr(processor, "image_processor", None) is None or not hasattr(processor, "image_token"):
        raise ConfigError(f"{where}: its processor takes no images")
    return HFLVLM(model.to(device).eval(), processor, load_image, settings)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
