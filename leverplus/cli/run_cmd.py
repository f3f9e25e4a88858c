"""`leverplus run <pipeline>`: execute a pipeline DAG on this machine with the local runner."""

from __future__ import annotations

import argparse

from leverplus.cpus import available_cpus


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from leverplus.ids import id_arg
    from leverplus.pipeline import PIPELINES

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run a pipeline (balanced-v3, data-growth, sft) on this machine",
        description="Run a pipeline DAG locally: every step is the same `leverplus <stage>` command a pod runs. "
        "With nothing configured it uses the embedded default: the synthetic world, the simulated LVLM, and sizes "
        "scaled down for a laptop. The same command typed again continues the newest unfinished run of the pipeline "
        "(killed, failed) where it stopped; --new starts another.",
    )
    run.add_argument("pipeline", choices=sorted(PIPELINES), help="which DAG")
    run.add_argument("--workers", type=int, default=min(4, available_cpus()), help="parallel fan-out processes")
    run.add_argument(
        "--profile",
        choices=("auto", "embedded", "embedded-lab", "none"),
        default="auto",
        help="auto: the embedded profile when nothing is configured (default); embedded-lab: the same world with "
        "the lab report's RL settings (GRPO lr 5e-6, one seed)",
    )
    run.add_argument(
        "--lvlm",
        choices=("sim", "hf"),
        help="shorthand for --set lvlm.backend=...; with hf, name the model with --set lvlm.model=DIR_OR_ID",
    )
    run.add_argument(
        "--new",
        action="store_true",
        help="start a new run even when an unfinished run of this pipeline exists (default: continue that one)",
    )
    run.add_argument(
        "--run-id",
        type=id_arg("run id"),
        help="run id (default: the newest unfinished run of this pipeline, else the next run-NNNN)",
    )
    run.add_argument(
        "--round-id", type=id_arg("round id"), help="data round id (default: the next round-NNNN in the store)"
    )
    run.add_argument("--sft-checkpoint", metavar="URI", help="SFT policy; trained first when not given")
    run.add_argument("--log-dir", default="leverplus-logs", help="where each step's log goes (default leverplus-logs)")
    run.add_argument("--summary-json", metavar="FILE", help='write {"run_id", "report_uri", "metrics_uri"} here')
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    from leverplus.cli import _parse_overrides
    from leverplus.launch import RunRequest, launch, write_summary

    summary = launch(
        RunRequest(
            pipeline=args.pipeline,
            config_file=getattr(args, "config", None),
            overrides=_parse_overrides(getattr(args, "overrides", []) or [])
            | ({"lvlm.backend": args.lvlm} if args.lvlm else {}),
            profile=args.profile,
            run_id=args.run_id,
            round_id=args.round_id,
            sft_checkpoint=args.sft_checkpoint,
            workers=args.workers,
            log_dir=args.log_dir,
            new=args.new,
        )
    )
    if args.summary_json:
        write_summary(summary, args.summary_json)
    print(summary["report_uri"] or f"run {summary['run_id']} finished: {summary['outcome'] or 'no report to write'}")
