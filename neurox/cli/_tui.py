"""``neurox tui``: watch and reshape a running network in the terminal."""
from __future__ import annotations

import argparse

from ._discovery import add_remote_arguments, add_target_arguments, remote_of


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tui", help="watch and reshape a running network in a terminal UI")
    add_target_arguments(parser)
    parser.add_argument("--events", help="the event bus endpoint (with --endpoint)")
    parser.add_argument("--reshaper", help="the reshaper's endpoint (with --endpoint)")
    add_remote_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime import KeysError
    from ..tui import Endpoints, ObserverError
    from ..tui.app import NeuroxApp  # Textual is imported only for this command

    try:
        remote = remote_of(args)
        endpoints = (Endpoints.through(remote) if remote is not None
                     else Endpoints(args.endpoint, args.events, args.reshaper) if args.endpoint
                     else Endpoints.from_data_dir(args.data_dir))
    except (ObserverError, ValueError, KeysError) as exc:
        print(f"neurox tui: {exc}")
        return 2
    NeuroxApp(endpoints, args.data_dir).run()
    return 0
