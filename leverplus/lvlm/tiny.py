"""Qwen2.5-VL models built from configs, with no hub and no download: a tiny one (tests, the CPU benchmark, the
`hf` backend on a laptop) and the real 3B architecture with random weights (the GPU benchmark: same FLOPs).

The tokenizer is a byte-level BPE trained here on prompt-like text, carrying Qwen's special tokens and a chat
template equivalent to Qwen2.5-VL's, so the real processor, chat templating and generation code paths run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leverplus.lvlm.prompt import ICD_TEMPLATE, SYSTEM_PROMPT

__all__ = ["SPECIAL_TOKENS", "build_qwen_vl", "build_tokenizer"]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL's template, less tools and video: images become <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PRIOR_ANSWERS = ("yes", "no", "2", "red", "circle")  # what a model with an answer prior tends to say

_CORPUS = [
    SYSTEM_PROMPT,
    *PRIOR_ANSWERS,  # on their own, so each is one token when it opens the assistant's turn
    *(
        ICD_TEMPLATE.format(question=q, answer=a)
        for q, a in [
            ("What color is the circle?", "red"),
            ("How many squares are there?", "3"),
            ("Is there a blue triangle?", "yes"),
            ("What shape is the green object?", "triangle"),
            ("Is the background striped?", "no"),
        ]
    ),
]

# Qwen2.5-VL-3B-Instruct's architecture (config.json of the released model).
FULL_SIZE: dict[str, dict[str, Any]] = {
    "text": {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "rope_theta": 1000000.0,
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
}
TINY: dict[str, dict[str, Any]] = {
    "text": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,  # head_dim 16: mrope_section must sum to 8
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "rope_theta": 1000000.0,
    },
    "vision": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [1],
    },
}


def build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 10, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def build_qwen_vl(
    path: str | Path | None = None,
    *,
    full_size: bool = False,
    answer_prior: bool = False,
    seed: int = 0,
    device: str = "cpu",
    dtype: Any = None,
) -> tuple[Any, Any]:
    """(model, processor) of a randomly initialised Qwen2.5-VL; saved to `path` when given (loadable by the `hf`
    backend). Tiny weights use a wide initialiser so greedy decoding is decisive, not a coin toss between ties.

    answer_prior: the saved generation config biases decoding (`sequence_bias`) towards a few one-word answers
    followed by the end of the turn, so the model answers "yes", "2", "red"... — which one still depends on the
    prompt. Pipeline tests use it: a random model's byte soup is never right, and a round needs some right answers."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    shape = FULL_SIZE if full_size else TINY
    text = {
        "vocab_size": len(tokenizer),
        **shape["text"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "initializer_range": 0.02 if full_size else 0.3,
    }
    vision = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={**vision, **shape["vision"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=full_size,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to(dtype=dtype or torch.float32).eval()
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    if answer_prior:
        model.generation_config.sequence_bias = _answer_prior(tokenizer, ids["<|im_end|>"])
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    if path is not None:
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return model, processor


def _answer_prior(tokenizer: Any, end: int) -> list[list[Any]]:
    bias = []
    for answer in PRIOR_ANSWERS:
        (token,) = tokenizer(answer, add_special_tokens=False)["input_ids"]
        bias += [[[token], 30.0], [[token, end], 60.0]]
    return bias
