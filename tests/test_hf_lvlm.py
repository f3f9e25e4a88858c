"""The transformers backend on a tiny but real Qwen2.5-VL (2 text layers, 2 vision blocks, a locally trained
tokenizer, the real Qwen2-VL image processor and chat template): the fast path against the naive one, the answer
span, answer_prob against a plain forward, the vision cache, OOM halving, and clear loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leverplus.config import load_settings
from leverplus.data import load_split
from leverplus.data.synth import synthesize
from leverplus.errors import ConfigError
from leverplus.lvlm.base import Request
from leverplus.lvlm.hf import HFLVLM, load_hf
from leverplus.lvlm.tiny import build_qwen_vl
from leverplus.store import open_store

SIZES = [(224, 224), (320, 160), (200, 300)]  # three aspect ratios: three different patch grids


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-qwen")
    build_qwen_vl(path)
    return path


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("world")
    synthesize(open_store(str(root)), 0, {"train": 90, "val": 3})
    return load_split(str(root), "train")


def _loader(train, calls: list | None = None):
    def load(record) -> Image.Image:
        if calls is not None:
            calls.append(record.image_key)
        return train.load_image(record).resize(SIZES[record.image_id % len(SIZES)])

    return load


def _lvlm(tiny_qwen: Path, train, calls: list | None = None, **settings: object) -> HFLVLM:
    lvlm = load_settings(overrides={"lvlm.model": str(tiny_qwen), **{f"lvlm.{k}": v for k, v in settings.items()}})
    return load_hf(lvlm.lvlm, _loader(train, calls))


def _requests(train, n: int, shots: tuple[int, ...] = (0, 1, 2, 3), seed: int = 0) -> list[Request]:
    records = list(train)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        picks = rng.choice(len(records), size=shots[i % len(shots)] + 1, replace=False)
        out.append(Request(records[picks[0]], tuple(records[j] for j in picks[1:])))
    return out


@pytest.mark.parametrize("beams", [1, 3])
def test_optimised_scorer_gives_the_naive_loops_answers(tiny_qwen: Path, train, beams: int) -> None:
    lvlm = _lvlm(tiny_qwen, train, num_beams=beams, batch_size=7)
    requests = _requests(train, 24)
    fast = lvlm.answer(requests)
    naive = lvlm.answer_naive(requests)
    assert [r.prediction for r in fast] == [r.prediction for r in naive]
    assert len({r.prediction for r in fast}) > 3  # real, varied generations, not one constant string
    assert lvlm.fast and lvlm.vision.encoded <= len({r.image_key for q in requests for r in (*q.icds, q.query)})


def test_cached_ids_equal_the_processors_and_the_span_is_the_answer(tiny_qwen: Path, train) -> None:
    lvlm = _lvlm(tiny_qwen, train)
    for request in _requests(train, 4):
        for with_answer in (False, True):
            ours = lvlm._cached_batch([request], with_answer).inputs
            plain = lvlm._processor_batch([request], with_answer).inputs
            assert torch.equal(ours["input_ids"], plain["input_ids"])
            assert torch.equal(ours["mm_token_type_ids"], plain["mm_token_type_ids"].int())
            assert torch.equal(ours["image_grid_thw"], plain["image_grid_thw"])
        enc = lvlm._processor_batch([request], with_answer=True)
        (length,) = enc.answer_lengths
        assert length > 0
        span = enc.inputs["input_ids"][0, -length:]
        assert lvlm.tokenizer.decode(span) == request.query.multiple_choice_answer  # exactly the answer's tokens
        prompt = lvlm.tokenizer.decode(enc.inputs["input_ids"][0, :-length])
        assert prompt.endswith("<|im_start|>assistant\n")  # nothing between the generation prompt and the answer


def test_a_padded_batch_has_the_processors_ids_and_mask(tiny_qwen: Path, train) -> None:
    lvlm = _lvlm(tiny_qwen, train)
    requests = _requests(train, 4)  # 0 to 3 shots: very different lengths, so most rows are left-padded
    for with_answer in (False, True):
        ours = lvlm._cached_batch(requests, with_answer)
        plain = lvlm._processor_batch(requests, with_answer)
        assert (ours.inputs["attention_mask"] == 0).any()
        for name in ("input_ids", "attention_mask"):
            assert torch.equal(ours.inputs[name], plain.inputs[name])
        assert ours.answer_lengths == plain.answer_lengths


def test_answer_prob_is_the_teacher_forced_probability_of_the_answer(tiny_qwen: Path, train) -> None:
    lvlm = _lvlm(tiny_qwen, train, batch_size=3)
    requests = _requests(train, 7)
    probs = lvlm.answer_prob(requests)
    for request, prob in zip(requests, probs, strict=True):
        enc = lvlm._processor_batch([request], with_answer=True)
        ids = enc.inputs["input_ids"][0]
        with torch.no_grad():
            logits = lvlm.model(**enc.inputs).logits[0]
        a = enc.answer_lengths[0]
        expected = 1.0
        for pos in range(len(ids) - a, len(ids)):
            expected *= torch.softmax(logits[pos - 1], -1)[ids[pos]].item()
        assert prob == pytest.approx(expected ** (1 / a), rel=1e-4)  # DESIGN: exp(-mean CE over the answer span)
        assert 0 < prob < 1


def test_vision_cache_encodes_each_image_once_and_stays_bounded(tiny_qwen: Path, train) -> None:
    calls: list[str] = []
    lvlm = _lvlm(tiny_qwen, train, calls, vision_cache_images=4)
    records = list(train)[:12:3]  # four different images
    first = lvlm.vision.features(records)
    again = lvlm.vision.features(records)
    assert len(calls) == 4 and lvlm.vision.encoded == 4  # loaded, resized and encoded once each
    assert all(a is b for a, b in zip(first, again, strict=True))
    lvlm.vision.features(list(train)[12:15:3])  # a fifth image evicts the least recently used one
    assert len(lvlm.vision._features) == 4 and records[0].image_key not in lvlm.vision._features
    refreshed = lvlm.vision.features(records[:1])
    assert torch.equal(refreshed[0], first[0])


def test_out_of_memory_halves_the_batch_and_retries(tiny_qwen: Path, train) -> None:
    from structlog.testing import capture_logs

    lvlm = _lvlm(tiny_qwen, train, num_beams=1, batch_size=8)
    requests = _requests(train, 10)
    expected = [r.prediction for r in lvlm.answer(requests)]
    generate = lvlm.model.generate

    def fragile(*args, **kwargs):  # a GPU that only fits 2 prompts at a time
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return generate(*args, **kwargs)

    lvlm.model.generate = fragile
    with capture_logs() as logs:
        assert [r.prediction for r in lvlm.answer(requests)] == expected
    assert lvlm.batch_size == 2
    assert [e["batch_size"] for e in logs if "halving the batch" in e["event"]] == [4, 2]


def test_loading_errors_are_clear(tiny_qwen: Path, tmp_path: Path, train) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    def load(model: str) -> None:
        load_hf(load_settings(overrides={"lvlm.model": model}).lvlm, _loader(train))

    with pytest.raises(ConfigError, match="no such directory"):
        load(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is a file"):
        load(str(tiny_qwen / "config.json"))
    text_only = tmp_path / "text-only"
    Qwen2ForCausalLM(
        Qwen2Config(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(text_only)
    with pytest.raises(ConfigError, match="not an image-text-to-text model"):
        load(str(text_only))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (
        "config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ):
        if (tiny_qwen / name).exists():
            (broken / name).write_bytes((tiny_qwen / name).read_bytes())
    with pytest.raises(ConfigError, match="cannot load"):  # no weights
        load(str(broken))


def test_s3_model_is_synced_once_even_when_processes_start_together(tiny_qwen: Path, s3_env, tmp_path: Path) -> None:
    import threading

    from structlog.testing import capture_logs

    from leverplus.lvlm.model_source import resolve_model

    bucket = s3_env.new_bucket()
    store = open_store(f"s3://{bucket}/models/tiny")
    for path in tiny_qwen.iterdir():
        store.put_file(path.name, path)
    uri, cache = f"s3://{bucket}/models/tiny", tmp_path / "cache"
    (cache / "stale-tmp").mkdir(parents=True)  # debris of a killed download is never mistaken for a model
    barrier, results = threading.Barrier(4), []

    def start() -> None:  # four scoring pods on one node, each with its own lock file descriptor
        barrier.wait()
        results.append(resolve_model(uri, cache))

    with capture_logs() as logs:
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert sum(e["event"] == "syncing model into the local cache" for e in logs) == 1
    local = Path(results[0])
    assert sorted(p.name for p in local.iterdir()) == sorted([".complete", *(p.name for p in tiny_qwen.iterdir())])
    assert all((local / p.name).read_bytes() == p.read_bytes() for p in tiny_qwen.iterdir())
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    lvlm = load_hf(load_settings(overrides={"lvlm.model": uri, "lvlm.cache_dir": str(cache)}).lvlm, lambda r: None)
    assert lvlm.name == f"hf:{uri}" and lvlm.fast

    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_model(f"s3://{bucket}/models/nothing-here", cache)


def test_an_unknown_hub_id_is_a_clear_error(tmp_path: Path) -> None:
    """In a fresh process, since the hub's offline switch is read at import time."""
    import subprocess
    import sys

    code = (
        "from leverplus.cli import main; "
        "raise SystemExit(main(['--set', 'lvlm.backend=hf', '--set', 'lvlm.model=nobody/no-such-model', "
        "'lvlm', 'check']))"
    )
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "lvlm.model nobody/no-such-model: cannot load it" in proc.stderr.strip().splitlines()[-1]


def test_lvlm_tiny_and_lvlm_check_through_the_cli(world, tmp_path: Path, capsys) -> None:
    from leverplus.cli import main

    model = tmp_path / "tiny"
    assert main(["lvlm", "tiny", "--out", str(model), "--answer-prior"]) == 0
    assert main(["lvlm", "tiny", "--out", str(model)]) == 2  # never overwritten
    settings = ["--set", f"store.uri={world.root}", "--set", "data.name=synthetic", "--set", "lvlm.backend=hf"]
    capsys.readouterr()
    assert main(["lvlm", "check", *settings, "--set", f"lvlm.model={model}", "--questions", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == 3 and all(r["prediction"] in {"yes", "no", "2", "red", "circle"} for r in rows)
    assert all(0 < r["answer_prob"] < 1 and r["accuracy"] in (0.0, 0.3, 0.6, 0.9, 1.0) for r in rows)
    assert lines[-1].startswith(f"hf:{model}: loaded in")


def test_full_size_builder_is_the_3b_architecture() -> None:
    """What the GPU benchmark builds, checked without memory: on the meta device."""
    model, processor = build_qwen_vl(full_size=True, device="meta")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(3.75e9, rel=0.01)  # Qwen2.5-VL-3B
    assert model.config.text_config.num_hidden_layers == 36 and model.config.vision_config.depth == 32
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id


def test_scoring_with_the_hf_backend_records_answer_probs_for_hard_plus_prob(world, tiny_qwen: Path) -> None:
    from leverplus.stages.layout import plan_key
    from leverplus.stages.plan import run_plan
    from leverplus.stages.score import run_score

    settings = {
        "lvlm.backend": "hf",
        "lvlm.model": str(tiny_qwen),
        "lvlm.num_beams": 1,
        "rl.reward_mode": "hard_plus_prob",
        "rl.target_new_queries": 2,
        "rl.prior_acceptance_rate": 1.0,
        "rl.candidates_per_query": 4,
    }
    run_plan(world("plan", **settings), "rl", plan_key("round-p"), "round-p")
    run_score(world("score", **settings), "round-p", 0, policy_uri=None)
    rows = (world.root / "rounds/round-p/shards/00000.jsonl").read_text().splitlines()
    candidates = [c for row in rows for c in json.loads(row)["candidates"]]
    assert len(candidates) == 8 and all(0 < c["answer_prob"] < 1 for c in candidates)
    assert all(json.loads(row)["lvlm"] == f"hf:{tiny_qwen}" for row in rows)


def test_the_processor_path_for_other_models_agrees_with_the_fast_path(tiny_qwen: Path, train) -> None:
    """Models outside FAST_MODEL_TYPES go through the processor, batched and left-padded: same answers and
    probabilities as the fast path on the same model."""
    fast = _lvlm(tiny_qwen, train, num_beams=1, batch_size=5)
    plain = _lvlm(tiny_qwen, train, num_beams=1, batch_size=5)
    plain.fast = False
    requests = _requests(train, 10)
    assert [r.prediction for r in plain.answer(requests)] == [r.prediction for r in fast.answer(requests)]
    assert plain.answer_prob(requests) == pytest.approx(fast.answer_prob(requests), rel=1e-4)
    assert plain.vision.encoded == 0  # nothing cached on this path
