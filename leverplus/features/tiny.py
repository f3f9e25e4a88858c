"""CLIP models built from configs, with no hub and no download: a tiny one (tests, the CPU benchmark) and
openai/clip-vit-base-patch32's architecture with random weights (the GPU benchmark: the same FLOPs). The tokenizer
is a BPE trained here on question-like text, so the real CLIPProcessor and tokenizer code paths run."""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_clip"]

SENTENCES = [
    "What color is the triangle?",
    "How many circles are there?",
    "Is there a red square?",
    "What shape is the blue object?",
]

ARCHITECTURES = {
    # width, MLP, layers, heads (text | vision), image size, patch, projection
    "tiny": {"text": (32, 64, 2, 2), "vision": (32, 64, 2, 2), "image": 32, "patch": 8, "projection": 16},
    "vit-b-32": {
        "text": (512, 2048, 12, 8),
        "vision": (768, 3072, 12, 12),
        "image": 224,
        "patch": 32,
        "projection": 512,
    },
}


def build_clip(path: Path, seed: int = 0, architecture: str = "tiny") -> Path:
    """A CLIPModel of `architecture` with random weights (`seed`) and a locally trained tokenizer, saved to path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    arch = ARCHITECTURES[architecture]
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
    size = arch["image"]
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer,
    )
    (tw, tm, tl, th), (vw, vm, vl, vh) = arch["text"], arch["vision"]
    config = CLIPConfig(
        text_config={
            "vocab_size": tok.get_vocab_size(),
            "hidden_size": tw,
            "intermediate_size": tm,
            "num_hidden_layers": tl,
            "num_attention_heads": th,
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": vw,
            "intermediate_size": vm,
            "num_hidden_layers": vl,
            "num_attention_heads": vh,
            "image_size": size,
            "patch_size": arch["patch"],
        },
        projection_dim=arch["projection"],
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path
