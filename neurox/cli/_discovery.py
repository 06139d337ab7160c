"""Finding a running network from the shell: ``neurox run`` and ``neurox node`` write ``run.json``
into their data directory with every endpoint a tool needs."""
from __future__ import annotations

import argparse
import json
import os

DEFAULT_DATA_DIR = "neurox-data"
RUN_FILE = "run.json"


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="the running network's data directory, to find it (default: %(default)s)")
    parser.add_argument("--endpoint", help="talk to this endpoint instead of finding it through --data-dir")


def find_network(data_dir: str) -> dict:
    """The endpoints of the network running from ``data_dir``, or {} if none is running there."""
    try:
        with open(os.path.join(data_dir, RUN_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
