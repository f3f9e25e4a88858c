"""`leverplus store clean`: remove what interrupted work left in a store (see leverplus.store.clean)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    store = commands.add_parser("store", help="maintain an artifact store")
    sub = store.add_subparsers(dest="store_command", metavar="<action>", required=True)
    clean = sub.add_parser(
        "clean",
        parents=[common],
        help="remove temp objects of killed writes and a lease whose holder is gone",
        description="Remove temp objects older than --older-than-hours (local temp files, S3 multipart uploads "
        "never completed) and the publishing lease when its holder is provably gone (same host, dead pid) or when "
        "--release-lease names it. `leverplus verify` lists them first.",
    )
    clean.add_argument("--store", metavar="URI", help="store to clean (default: the configured store.uri)")
    clean.add_argument("--older-than-hours", type=float, default=24.0, help="temp objects at least this old (24)")
    clean.add_argument(
        "--release-lease", action="store_true", help="remove the lease even if its holder may be alive (checked by you)"
    )
    clean.set_defaults(handler=_clean)


def _clean(args: argparse.Namespace) -> None:
    from leverplus.cli import load_cli_settings
    from leverplus.errors import ConfigError
    from leverplus.stages.layout import LEASE
    from leverplus.store import open_store
    from leverplus.store.clean import clean

    if args.older_than_hours < 0:
        raise ConfigError(f"--older-than-hours {args.older_than_hours}: must be >= 0")
    settings = load_cli_settings(args, {"store.uri": args.store} if args.store else None)
    store = open_store(settings.store.uri, settings.store)
    removed = clean(store, LEASE, args.older_than_hours * 3600, args.release_lease)
    for line in removed:
        print(line)
    print(f"{store.uri}: {len(removed)} thing(s) removed")
