"""The one rule for ids that become store keys and folder names (run, round, data name): checked where they
enter (settings, command line) before anything is written."""

from __future__ import annotations

import re

from leverplus.errors import ConfigError

__all__ = ["ID_RULE", "check_id"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ID_RULE = "letters, digits, '.', '_' and '-', at most 128, starting with a letter or digit (no '/' or '..')"


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        raise ConfigError(f"invalid {what} {value!r}: use {ID_RULE}")
    return value
