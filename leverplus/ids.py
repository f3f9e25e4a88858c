"""The one rule for ids that become store keys and folder names (run, round, data name): checked where they
enter (settings, command line) before anything is written."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from leverplus.errors import ConfigError

__all__ = ["ID_RULE", "check_id", "id_arg", "is_id"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ID_RULE = "letters, digits, '.', '_' and '-', at most 128, starting with a letter or digit (no '/' or '..')"


def is_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.fullmatch(value)) and ".." not in value


def check_id(value: str, what: str) -> str:
    if not is_id(value):
        raise ConfigError(f"invalid {what} {value!r}: use {ID_RULE}")
    return value


def id_arg(what: str) -> Callable[[str], str]:
    """The rule as an argparse type: ids are checked as the command line is parsed, before anything runs."""

    def parse(value: str) -> str:
        try:
            return check_id(value, what)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = what
    return parse
