"""`leverplus workflows render`: (re)generate the Argo YAML in workflows/ from the pipeline definitions."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    workflows = commands.add_parser("workflows", help="compile the pipelines to Argo Workflows YAML")
    sub = workflows.add_subparsers(dest="workflows_command", metavar="<action>", required=True)
    render = sub.add_parser("render", help="write workflows/*.yaml (WorkflowTemplates, Workflow, CronWorkflow)")
    render.add_argument("--out", default="workflows", help="output folder (default workflows/)")
    render.add_argument(
        "--chart",
        help="Helm chart whose files/ embed the templates (default: charts/leverplus when --out is the default "
        "workflows/, none otherwise: rendering elsewhere never touches the chart)",
    )
    render.add_argument("--image", help="container image reference (default leverplus:<version>)")
    render.add_argument("--check", action="store_true", help="write nothing; exit 2 if the files are out of date")
    render.set_defaults(handler=_render)
    placement = sub.add_parser(
        "placement",
        parents=[common],
        help="print the training steps' podSpecPatch for these settings (the workflows' placement task)",
        description="Print the pod spec patch that sft, rce and grpo pods run with: --gpu-pod-patch when "
        "policy.encoder is clip-lora (CLIP towers train inside the policy), '{}' otherwise (a CPU pod).",
    )
    placement.add_argument("--gpu-pod-patch", required=True, metavar="JSON", help="the GPU steps' podSpecPatch")
    placement.set_defaults(handler=_placement)


def _placement(args: argparse.Namespace) -> None:
    from leverplus.argo import training_pod_patch
    from leverplus.cli import load_cli_settings

    print(training_pod_patch(load_cli_settings(args).policy.encoder, args.gpu_pod_patch))


def _render(args: argparse.Namespace) -> None:
    from leverplus.argo import ArgoOptions, generated_files
    from leverplus.errors import ConfigError

    opts = ArgoOptions(image=args.image) if args.image else ArgoOptions()
    chart = args.chart if args.chart is not None else ("charts/leverplus" if args.out == "workflows" else "")
    files = generated_files(Path(args.out), Path(chart) if chart else None, opts)
    if args.check:
        stale = [str(p) for p, text in files.items() if not p.is_file() or p.read_text() != text]
        if stale:
            raise ConfigError(f"generated workflows out of date: {', '.join(stale)}; run `make workflows`")
        print("generated workflows: up to date")
        return
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
