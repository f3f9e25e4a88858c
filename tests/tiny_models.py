"""Tiny but real transformers models built from configs (no hub, no downloads)."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "What color is the triangle?",
    "How many circles are there?",
    "Is there a red square?",
    "What shape is the blue object?",
]


def build_tiny_clip(path: Path) -> Path:
    """A 2-layer CLIPModel (width 32, 32x32 images) with a locally trained BPE tokenizer, saved to path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        SENTENCES * 20, trainers.BpeTrainer(vocab_size=200, special_tokens=["<|startoftext|>", "<|endoftext|>"])
    )
    tokenizer = CLIPTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": tok.get_vocab_size(),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path
