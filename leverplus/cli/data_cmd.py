"""`leverplus data synth` and `leverplus data validate`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from leverplus.errors import ConfigError

if TYPE_CHECKING:
    from leverplus.store import Store


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    data = commands.add_parser("data", help="create and check VQAv2-format datasets")
    sub = data.add_subparsers(dest="data_command", metavar="<action>", required=True)

    synth = sub.add_parser(
        "synth",
        parents=[common],
        help="write the synthetic VQAv2-format world",
        description="Render a synthetic dataset with the official VQAv2 file names and layout. "
        "The same seed gives byte-identical files.",
    )
    synth.add_argument("--out", required=True, metavar="URI", help="dataset root: a path, file:// or s3:// URI")
    synth.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    synth.add_argument("--train", type=_non_negative, default=3000, help="train questions (default 3000)")
    synth.add_argument("--val", type=_non_negative, default=600, help="val questions (default 600)")
    synth.add_argument(
        "--add",
        type=_non_negative,
        metavar="N",
        help="grow the train split of the world already at --out by N questions (same seed: every existing question, "
        "image and answer stays byte-identical; val is untouched), so nightly rounds never run dry",
    )
    synth.set_defaults(handler=_synth)

    validate = sub.add_parser(
        "validate",
        parents=[common],
        help="check a VQAv2-format dataset and print counts",
        description="Load and validate each split (10 answers, answer types, question/annotation join) and print "
        "question counts per split and answer type.",
    )
    validate.add_argument("--root", required=True, metavar="URI", help="dataset root: a path, file:// or s3:// URI")
    validate.add_argument(
        "--split", action="append", choices=("train", "val"), help="split to check (repeatable; default both)"
    )
    validate.add_argument("--check-images", action="store_true", help="also check that every image exists")
    validate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    validate.set_defaults(handler=_validate)


def _synth(args: argparse.Namespace) -> None:
    from leverplus.cli import load_cli_settings
    from leverplus.data.synth import synthesize
    from leverplus.log import get_logger
    from leverplus.progress import progress
    from leverplus.store import open_store

    if args.train == 0 and args.val == 0:
        raise ConfigError("data synth: --train and --val are both 0; nothing to write")
    settings = load_cli_settings(args)
    store = open_store(args.out, settings.store)
    sizes = {split: n for split, n in (("train", args.train), ("val", args.val)) if n > 0}
    if args.add is not None:
        args.seed, sizes = _grown(store, args.add)
        store.put_bytes(GROWTH, json.dumps({"seed": args.seed, "add": args.add, **sizes}).encode())
    with progress(sum(sizes.values()), "rendering questions") as update:
        synthesize(store, args.seed, sizes, progress=update)
    store.delete(GROWTH)
    get_logger().info("synthetic dataset written", root=store.uri, seed=args.seed, **sizes)
    print(store.uri)


GROWTH = "synth-growth.json"  # an `--add` in progress: {"seed", "add", "train": the size it grows the world to}


def _grown(store: Store, add: int) -> tuple[int, dict[str, int]]:
    """(the world's seed, {"train": its size + add}) for `data synth --add`. A growth that was interrupted (its
    intent is still recorded) is finished, not repeated: typed again after a kill, --add 300 adds 300 once."""
    import re

    from leverplus.data.vqav2 import annotations_file

    if add == 0:
        raise ConfigError("data synth --add 0: nothing to add")
    if store.exists(GROWTH):
        intent = json.loads(store.get_bytes(GROWTH))
        if intent.get("add") != add:
            raise ConfigError(f"data synth --add: an interrupted --add {intent.get('add')} is unfinished "
                              f"({store.uri_for(GROWTH)}); type that command again to finish it")  # fmt: skip
        from leverplus.log import get_logger

        get_logger().info("finishing an interrupted growth", root=store.uri, train=intent["train"])
        return int(intent["seed"]), {"train": int(intent["train"])}
    key = annotations_file("train")  # written last: its size is the world's last complete size
    if not store.exists(key):
        raise ConfigError(f"data synth --add: {store.uri_for(key)} does not exist; synthesise the world first")
    doc = json.loads(store.get_bytes(key))
    seed = re.search(r"\(seed (-?\d+)\)", doc.get("info", {}).get("description", ""))
    if seed is None:
        raise ConfigError(f"data synth --add: {store.uri_for(key)} is not a synthetic world (no seed recorded)")
    return int(seed.group(1)), {"train": len(doc["annotations"]) + add}


def _validate(args: argparse.Namespace) -> None:
    from leverplus.cli import load_cli_settings
    from leverplus.data import load_split
    from leverplus.store import open_store

    settings = load_cli_settings(args)
    store = open_store(args.root, settings.store)
    report = {}
    for split in args.split or ["train", "val"]:
        loaded = load_split(store, split, check_images=args.check_images)
        report[split] = {
            "questions": len(loaded),
            "images": len({r.image_id for r in loaded}),
            "per_answer_type": loaded.answer_type_counts(),
        }
    if args.json:
        print(json.dumps({"root": store.uri, "images_checked": args.check_images, "splits": report}))
        return
    print(f"{store.uri}: valid{' (images checked)' if args.check_images else ''}")
    print(f"{'split':<6} {'questions':>9} {'images':>7} {'yes/no':>7} {'number':>7} {'other':>7}")
    for split, row in report.items():
        t = row["per_answer_type"]
        print(f"{split:<6} {row['questions']:>9} {row['images']:>7} {t['yes/no']:>7} {t['number']:>7} {t['other']:>7}")
