"""``neurox tui``: watch and reshape a running network in the terminal."""
from __future__ import annotations

import argparse

from ._discovery import add_target_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tui", help="watch and reshape a running network in a terminal UI")
    add_target_arguments(parser)
    parser.add_argument("--events", help="the event bus endpoint (with --endpoint)")
    parser.add_argument("--reshaper", help="the reshaper's endpoint (with --endpoint)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..tui import Endpoints, ObserverError
    from ..tui.app import NeuroxApp  # Textual is imported only for this command

    try:
        endpoints = (Endpoints(args.endpoint, args.events, args.reshaper) if args.endpoint
                     else Endpoints.from_data_dir(args.data_dir))
    except ObserverError as exc:
        print(f"neurox tui: {exc}")
        return 2
    NeuroxApp(endpoints, args.data_dir).run()
    return 0
