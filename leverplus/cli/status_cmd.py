"""`leverplus status`: what a store holds, at a glance (rounds, balanced versions, runs, lease)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status",
        parents=[common],
        help="show a store's rounds, balanced versions, runs and any unfinished run or lease",
        description="Print the store's catalog: each round's scored/accepted/added queries, each balanced version's "
        "size, each run's pipeline, status and policy accuracy, and anything unfinished.",
    )
    status.add_argument("--store", metavar="URI", help="store to show (default: the configured store.uri)")
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> None:
    from leverplus.catalog import status
    from leverplus.cli import load_cli_settings
    from leverplus.store import open_store

    settings = load_cli_settings(args, {"store.uri": args.store} if args.store else None)
    data = status(open_store(settings.store.uri, settings.store))
    if args.json:
        print(json.dumps(data, sort_keys=True))
        return
    _print_tables(data)


def _print_tables(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]{data['store']}[/bold]")
    rounds = Table("round", "scored", "accepted", "added", "version", title="rounds", title_justify="left")
    for round_id, r in data["rounds"].items():
        cells = [str(r[k]) for k in ("scored", "accepted", "added", "version")] if r["filtered"] else ["not filtered"]
        rounds.add_row(round_id, *cells)
    versions = Table("version", "queries", "candidates", "positive", "round", "added", title="balanced versions",
                     title_justify="left")  # fmt: skip
    for name, v in data["balanced_versions"].items():
        latest = " (latest)" if name == data["latest"] else ""
        versions.add_row(name + latest, str(v["queries"]), str(v["candidates"]), f"{v['positive_ratio']:.3f}",
                         v["round"], str(v["added"]))  # fmt: skip
    runs = Table("run", "pipeline", "status", "policy accuracy by shots", "note", title="runs", title_justify="left")
    for run_id, r in data["runs"].items():
        accuracy = "  ".join(f"{k}: {v:.1f}" for k, v in r["policy_accuracy"].items())
        runs.add_row(run_id, r["pipeline"] or "-", r["status"] or "-", accuracy or "-", r["outcome"])
    for table in (rounds, versions, runs):
        console.print(table)
    for run_id in data["unfinished_runs"]:
        console.print(f"unfinished: {run_id} (`leverplus run {data['runs'][run_id]['pipeline']}` continues it)")
    if data["pointer_lags"]:
        console.print(f"the latest pointer lags {data['latest']} (a publish was killed after the version was written); "
                      "the next publish moves it")  # fmt: skip
    if data["lease"]:
        console.print(f"lease: held by {data['lease']}")
