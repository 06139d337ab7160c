"""Finding a running network from the shell: ``neurox run`` and ``neurox node`` write ``run.json``
into their data directory with every endpoint a tool needs."""
from __future__ import annotations

import argparse
import json
import os

DEFAULT_DATA_DIR = "neurox-data"
RUN_FILE = "run.json"


def add_target_arguments(parser: argparse.ArgumentParser, again: bool = False) -> None:
    """``--data-dir`` and ``--endpoint``. ``again``: on a subcommand of a parser that has them already, so that
    they may come before or after it (given after, they win; not given, they leave the parser's be)."""
    parser.add_argument("--data-dir", default=argparse.SUPPRESS if again else DEFAULT_DATA_DIR,
                        help=f"the running network's data directory, to find it (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--endpoint", default=argparse.SUPPRESS if again else None,
                        help="talk to this endpoint instead of finding it through --data-dir")


def add_remote_arguments(parser: argparse.ArgumentParser, again: bool = False) -> None:
    """``--remote``: a host of a network spread over hosts, through its control gateway (docs/deployment.md);
    ``again`` as for :func:`add_target_arguments`."""
    unset = {"default": argparse.SUPPRESS} if again else {}
    group = parser.add_argument_group("a remote host, through its control gateway (CURVE)")
    group.add_argument("--remote", metavar="TCP_ENDPOINT", help="the host's gateway, tcp://ADDRESS:BASE+5", **unset)
    group.add_argument("--keys", metavar="DIR", help="with --remote: the directory of this client's key pair "
                                                     "and of allowed/HOST.key", **unset)
    group.add_argument("--key-name", help="with --remote: the client's pair, NAME.key_secret (default: admin)",
                       **({"default": "admin"} if not again else unset))
    group.add_argument("--server", metavar="HOST", help="with --remote: the host's name (its allowed/HOST.key)",
                       **unset)


def remote_of(args: argparse.Namespace):
    """The ``Remote`` the arguments name, or None; ValueError with what is missing."""
    if not getattr(args, "remote", None):
        return None
    if not args.keys or not args.server:
        raise ValueError("--remote needs --keys DIR and --server HOST (and --key-name, default admin)")
    from ..ops import Remote  # only with --remote: the plain probes stay light
    return Remote(args.remote, args.keys, args.key_name, args.server)


def find_network(data_dir: str) -> dict:
    """The endpoints of the network running from ``data_dir``, or {} if none is running there."""
    try:
        with open(os.path.join(data_dir, RUN_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def write_run_file(network, dataset: dict | None = None) -> str:
    """Write ``run.json`` for a started network (``neurox.neuron.Network``); returns its path. ``dataset``
    (``path``, None for the digits; ``target``, ``task``, ``missing``): what it learns, for ``ask --random``."""
    path = os.path.join(network.data_dir, RUN_FILE)
    with open(path, "w") as f:
        json.dump({"run_dir": network.run_dir, "messenger_in": network.messenger_in, "control": network.control,
                   "events": network.events, "events_control": network.tree.events_control,
                   "reshaper": network.reshaper, "data_dir": network.data_dir, "pid": os.getpid(),
                   "dataset": dataset}, f)
    return path
