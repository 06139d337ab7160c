"""The ``neurox`` command: one subcommand per module, each registering its own arguments."""
from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS = {
    "run": "neurox.cli._run",
    "ask": "neurox.cli._ask",
    "reshape": "neurox.cli._reshape",
    "probe": "neurox.cli._probe",
    "tui": "neurox.cli._tui",
    "bench": "neurox.cli._bench",
    "node": "neurox.cli._node",
    "keys": "neurox.cli._keys",
    "exporter": "neurox.cli._exporter",
    "telegram": "neurox.cli._telegram",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neurox", description="A living neural network of supervised OS processes.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        importlib.import_module(module_name).register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # the reader went away (`neurox probe status | head`): not an error
        return 0

