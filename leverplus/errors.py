"""One small exception hierarchy. Every expected failure is a LeverPlusError whose message names the offending
file, field or id; the CLI prints it on one line and exits 2. Anything else is a bug and exits 1."""

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataError",
    "IntegrityError",
    "LeverPlusError",
    "NotFoundError",
    "StoreError",
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
