"""`leverplus lvlm check` (does the configured LVLM load and answer?) and `leverplus lvlm tiny` (a tiny random
Qwen2.5-VL on disk, to try the `hf` backend on a laptop without downloading a model)."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    lvlm = commands.add_parser("lvlm", help="check the configured LVLM; write a tiny test model")
    sub = lvlm.add_subparsers(dest="lvlm_command", metavar="<action>", required=True)

    check = sub.add_parser(
        "check",
        parents=[common],
        help="load the configured LVLM and answer a few eval questions",
        description="Load lvlm.model with the configured backend and answer the first eval questions with ICDs "
        "from the train split: one JSON line per question (prediction, VQA accuracy, P(answer)), then the load "
        "and answer times. Run it before a round to catch a wrong model, processor or device early.",
    )
    check.add_argument("--questions", type=int, default=4, help="eval questions to answer (default 4)")
    check.add_argument("--shots", type=int, default=2, help="ICDs per prompt (default 2)")
    check.set_defaults(handler=_check)

    tiny = sub.add_parser(
        "tiny",
        parents=[common],
        help="write a tiny random Qwen2.5-VL (under 1 MB) for trying lvlm.backend=hf",
        description="Build a 2-layer Qwen2.5-VL with a locally trained tokenizer and the real Qwen2-VL processor "
        "and save it; its answers are nonsense but every code path of the hf backend is real.",
    )
    tiny.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist)")
    tiny.add_argument(
        "--answer-prior", action="store_true", help='bias it towards one-word answers ("yes", "red", "2", ...)'
    )
    tiny.set_defaults(handler=_tiny)


def _check(args: argparse.Namespace) -> None:
    import time

    from leverplus.cli import load_cli_settings
    from leverplus.lvlm.base import Request
    from leverplus.metrics import vqa_accuracy
    from leverplus.stages.context import StageContext

    ctx = StageContext(load_cli_settings(args), "lvlm-check")
    start = time.perf_counter()
    lvlm = ctx.lvlm  # first: a model that does not load is what this command is for
    load_s = time.perf_counter() - start
    questions = list(ctx.split(ctx.settings.data.eval_split))[: args.questions]
    icds = tuple(list(ctx.split(ctx.settings.data.train_split))[: args.shots])
    requests = [Request(q, icds) for q in questions]
    start = time.perf_counter()
    responses, probs = lvlm.answer(requests), lvlm.answer_prob(requests)
    answer_s = time.perf_counter() - start
    for q, response, prob in zip(questions, responses, probs, strict=True):
        accuracy = vqa_accuracy(response.prediction, q.answers, ctx.settings.eval.metric_mode)
        row = {"question_id": q.question_id, "question": q.question, "prediction": response.prediction}
        print(json.dumps(row | {"accuracy": accuracy, "answer_prob": float(f"{prob:.4g}")}))
    print(f"{lvlm.name}: loaded in {load_s:.1f} s; {len(requests)} prompts answered and scored in {answer_s:.2f} s")


def _tiny(args: argparse.Namespace) -> None:
    from pathlib import Path

    import transformers

    from leverplus.errors import ConfigError
    from leverplus.lvlm.tiny import build_qwen_vl

    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"lvlm tiny: {out} exists; choose a new folder (nothing is overwritten)")
    transformers.utils.logging.disable_progress_bar()
    build_qwen_vl(out, answer_prior=args.answer_prior)
    print(out)
