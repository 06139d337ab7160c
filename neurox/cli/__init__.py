"""The ``neurox`` command: one subcommand per module, each registering its own arguments.

Only the module of the subcommand given is imported (``neurox --help`` and a probe start in a fraction of
the time it takes to import every subcommand's dependencies): the others appear in the help by the one
line below, which a test keeps equal to what each module registers.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "run": ("neurox.cli._run", "run a network that learns online (the 1-2-3-2-1 diamond on the digits by default)"),
    "ask": ("neurox.cli._ask", "send one request to MessengerIn and print the answer (and the reply as JSON)"),
    "reshape": ("neurox.cli._reshape", "change the shape or settings of a running network"),
    "topology": ("neurox.cli._reshape", "the live topology of a running network"),
    "probe": ("neurox.cli._probe", "ping, inspect, follow and poke a running network"),
    "tui": ("neurox.cli._tui", "watch and reshape a running network in a terminal UI"),
    "bench": ("neurox.cli._bench", "run a benchmark; the last line printed is one JSON object"),
    "node": ("neurox.cli._node", "the per-host agent: run this host's network under systemd (Type=notify)"),
    "keys": ("neurox.cli._keys", "make a CURVE key pair (NAME.key, NAME.key_secret) in a directory"),
    "exporter": ("neurox.cli._exporter", "serve a running network's metrics for Prometheus at /metrics"),
    "telegram": ("neurox.cli._telegram", "answer designated Telegram users about the network (chat-ops)"),
}


def parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the full arguments of the subcommand named in ``argv`` (its module imported) and
    one line of help for each of the others."""
    parser = argparse.ArgumentParser(prog="neurox", description="A living neural network of supervised OS processes.")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    if chosen in SUBCOMMANDS:
        importlib.import_module(SUBCOMMANDS[chosen][0]).register(sub)
    for name, (_, text) in SUBCOMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser_for(argv).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # the reader went away (`neurox probe status | head`): not an error
        return 0
