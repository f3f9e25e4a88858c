"""`leverplus study scaling`: accuracy against balanced data, over nightly rounds that each retrain."""

from __future__ import annotations

import argparse

from leverplus.cpus import available_cpus


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    study = commands.add_parser("study", help="experiments made of pipeline runs (scaling)")
    sub = study.add_subparsers(dest="study_command", metavar="<study>", required=True)
    scaling = sub.add_parser(
        "scaling",
        parents=[common],
        help="accuracy against balanced queries: N nightly rounds, a retrain at each",
        description="A balanced-v3 run, then N-1 data-growth rounds that each retrain on the cumulative balanced "
        "set (rl.retrain_growth 0), on one store and one world synthesised large enough for every round; then "
        "studies/scaling/report.{md,html} with noise-free accuracy at each shot count against balanced queries. "
        "Typed again, it continues where it stopped.",
    )
    scaling.add_argument("--rounds", type=int, default=5, help="runs in the study, the first included (default 5)")
    scaling.add_argument("--store", default="leverplus-study", help="the study's store (default leverplus-study)")
    scaling.add_argument("--workers", type=int, default=min(4, available_cpus()), help="parallel fan-out processes")
    scaling.add_argument("--log-dir", default="leverplus-logs", help="where each step's log goes")
    scaling.set_defaults(handler=_scaling)


def _scaling(args: argparse.Namespace) -> None:
    from leverplus.cli import _parse_overrides
    from leverplus.errors import ConfigError
    from leverplus.launch import RunRequest
    from leverplus.study import run_scaling_study

    if args.rounds < 2:
        raise ConfigError(f"study scaling --rounds {args.rounds}: need at least 2 runs to draw a trend")
    overrides = {"store.uri": args.store} | _parse_overrides(getattr(args, "overrides", []) or [])
    request = RunRequest(
        "balanced-v3", getattr(args, "config", None), overrides, workers=args.workers, log_dir=args.log_dir
    )
    print(run_scaling_study(request, args.rounds))
