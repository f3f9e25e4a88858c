"""Structured logging: JSON lines in pods (stderr not a terminal, or LEVERPLUS_LOG_FORMAT=json), readable console
lines on a terminal. Context such as run, stage and shard is bound once and appears on every line."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

__all__ = ["bind", "configure_logging", "get_logger", "json_logs_enabled"]


def json_logs_enabled() -> bool:
    fmt = os.environ.get("LEVERPLUS_LOG_FORMAT", "").lower()
    if fmt in ("json", "console"):
        return fmt == "json"
    return not sys.stderr.isatty()


def configure_logging(level: str | None = None) -> None:
    level_name = (level or os.environ.get("LEVERPLUS_LOG_LEVEL") or "INFO").upper()
    numeric = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json_logs_enabled()
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolve sys.stderr at write time so redirected/captured stderr (tests, subprocesses) is honoured.
        logger_factory=structlog.PrintLoggerFactory(file=_StderrProxy()),
        cache_logger_on_first_use=False,
    )


class _StderrProxy:
    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def bind(**context: Any) -> None:
    """Bind context (run=..., stage=..., shard=...) to every later log line of this process."""
    structlog.contextvars.bind_contextvars(**context)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()
