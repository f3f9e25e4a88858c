"""`leverplus config show`: the effective settings as YAML, secrets masked."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    config = commands.add_parser("config", help="inspect settings")
    sub = config.add_subparsers(dest="config_command", metavar="<action>", required=True)
    show = sub.add_parser(
        "show",
        parents=[common],
        help="print the effective settings as YAML (secrets masked)",
        description="Print defaults < --config YAML < LEVERPLUS_* env < --set, with secrets masked.",
    )
    show.set_defaults(handler=_show)
    reference = sub.add_parser("reference", help="print every setting as a Markdown table (docs/configuration.md)")
    reference.set_defaults(handler=_reference)


def _show(args: argparse.Namespace) -> None:
    from leverplus.cli import load_cli_settings
    from leverplus.config import settings_hash, settings_to_yaml

    settings = load_cli_settings(args)
    print(f"# settings hash: {settings_hash(settings)}")
    print(settings_to_yaml(settings), end="")


def _reference(args: argparse.Namespace) -> None:
    from leverplus.config import settings_reference_markdown

    print(settings_reference_markdown(), end="")
