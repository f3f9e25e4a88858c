"""One small exception hierarchy. Every expected failure is a LeverPlusError whose message names the offending
file, field or id; the CLI prints it on one line and exits 2. Anything else is a bug and exits 1."""

from typing import Any

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataError",
    "IntegrityError",
    "LeverPlusError",
    "NotFoundError",
    "StoreError",
    "first_problem",
]


class LeverPlusError(Exception):
    """Bad input or configuration: the user can fix it from the message alone."""


class ConfigError(LeverPlusError):
    """An invalid setting, config file or command-line value."""


class DataError(LeverPlusError):
    """Malformed input data: a dataset file, a record, a results file."""


class StoreError(LeverPlusError):
    """The artifact store could not be used: bad URI, unreachable endpoint, rejected credentials."""


class NotFoundError(StoreError):
    """An object that should exist in the store does not."""


class IntegrityError(LeverPlusError):
    """An object exists but is truncated, corrupted or does not match its manifest."""


class ConflictError(LeverPlusError):
    """Another process holds what this one needs (a publishing lease)."""


def first_problem(exc: Any) -> str:
    """A pydantic ValidationError's first problem on one line: "field.path: message" (or the message alone when the
    record as a whole is wrong)."""
    err = exc.errors()[0]
    where, message = ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
