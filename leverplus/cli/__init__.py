"""`leverplus <command>`: parse settings and arguments, then call a pure function. Heavy libraries are imported
inside the handlers so that `--help` is instant.

Exit codes: 0 success, 2 bad input or configuration (one line on stderr), 1 unexpected failure, 130 interrupted,
143 terminated (SIGTERM: cleaned up on the way out).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import yaml

from leverplus import __version__
from leverplus.errors import ConfigError, LeverPlusError

__all__ = ["build_parser", "load_cli_settings", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _settings_options() -> argparse.ArgumentParser:
    """--config and --set, accepted before the command and after it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config", default=argparse.SUPPRESS, metavar="FILE", help="YAML settings file (see `config show`)"
    )
    parent.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=argparse.SUPPRESS,
        metavar="GROUP.FIELD=VALUE",
        help="override one setting, e.g. --set lvlm.backend=sim (repeatable; highest precedence)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    from leverplus.cli import (
        config_cmd,
        data_cmd,
        eval_score_cmd,
        lvlm_cmd,
        run_cmd,
        stages_cmd,
        status_cmd,
        store_cmd,
        study_cmd,
        workflows_cmd,
    )

    common = _settings_options()
    parser = argparse.ArgumentParser(
        prog="leverplus",
        description="Grow balanced RL data for an ICD selector, train it (SFT, RCE, GRPO) and evaluate it on VQAv2.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"leverplus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for module in (
        config_cmd,
        data_cmd,
        eval_score_cmd,
        lvlm_cmd,
        stages_cmd,
        run_cmd,
        status_cmd,
        store_cmd,
        study_cmd,
        workflows_cmd,
    ):
        module.register(commands, common)
    return parser


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected GROUP.FIELD=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            overrides[key.strip()] = raw
    return overrides


def load_cli_settings(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    from leverplus.config import load_settings

    overrides = _parse_overrides(getattr(args, "overrides", []) or [])
    overrides.update(extra or {})
    return load_settings(getattr(args, "config", None), overrides)


def main(argv: Sequence[str] | None = None) -> int:
    from leverplus.cpus import limit_threads
    from leverplus.log import configure_logging, get_logger

    limit_threads()  # before any handler imports torch
    configure_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (exit 2) and --help (exit 0), as a return code for callers
        return int(exc.code or 0) if isinstance(exc.code, int | None) else EXIT_BAD_INPUT
    try:
        with _terminate_as_exception():
            result = args.handler(args)
        return EXIT_OK if result is None else int(result)
    except Terminated:
        print("leverplus: terminated (SIGTERM): what it held is released, what it wrote stays", file=sys.stderr)
        return 128 + signal.SIGTERM
    except LeverPlusError as exc:
        print(f"leverplus: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # outside the store (logs, a config file): disk full, read-only, denied
        where = f" {exc.filename}" if exc.filename else ""
        print(f"leverplus: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("leverplus: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: keep the traceback for the report
        get_logger().exception("unexpected failure", command=args.command, error=type(exc).__name__)
        return EXIT_FAILURE


class Terminated(BaseException):
    """SIGTERM (Argo stopping a pod, a deadline, `kill`), raised where the process is, so that `finally` and
    `with` blocks run: the publishing lease is released and temp files are removed. SIGKILL cannot be caught."""


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread may take signals
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(message: str) -> str:
    return " ".join(message.split())
