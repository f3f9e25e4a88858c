"""`leverplus eval-score`: official VQA accuracy of a results file."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser(
        "eval-score",
        parents=[common],
        help="score a results file with the official VQA accuracy",
        description='Score [{"question_id": int, "answer": str}] against VQAv2 questions/annotations and print '
        '{"overall", "perAnswerType", "perQuestion"} as percentages rounded to 2 decimals.',
    )
    cmd.add_argument("--questions", required=True, metavar="URI", help="v2_OpenEnded_mscoco_*_questions.json")
    cmd.add_argument("--annotations", required=True, metavar="URI", help="v2_mscoco_*_annotations.json")
    cmd.add_argument("--results", required=True, metavar="URI", help="results file in the official format")
    cmd.add_argument(
        "--mode",
        choices=("official", "lenient"),
        default="official",
        help="official: normalise only when the 10 GT answers differ (default); lenient: always normalise",
    )
    cmd.set_defaults(handler=_eval_score)


def _eval_score(args: argparse.Namespace) -> None:
    from leverplus.cli import load_cli_settings
    from leverplus.data.vqav2 import load_question_files
    from leverplus.metrics.scoring import parse_results, score_predictions
    from leverplus.store import open_object

    settings = load_cli_settings(args)
    records = load_question_files(args.questions, args.annotations, settings.store)
    store, name = open_object(args.results, settings.store)
    predictions = parse_results(store.get_bytes(name), store.uri_for(name))
    print(json.dumps(score_predictions(predictions, records, args.mode, source=store.uri_for(name))))
