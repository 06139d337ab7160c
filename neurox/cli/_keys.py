"""``neurox keys --dir DIR NAME``: make a CURVE key pair for a host or an admin client.

Writes ``DIR/NAME.key`` (the public key, to copy into every peer's ``allowed/``) and
``DIR/NAME.key_secret`` (mode 0600, never printed), and creates ``DIR/allowed/`` (0750), the allow-list
to fill with the public keys of every host and admin client (docs/deployment.md). An existing pair is
kept: keys are made once and only replaced on purpose, by removing them first.
"""
from __future__ import annotations

import argparse
import os

from ..runtime import create_keys
from ..runtime import ALLOWED_DIR

EXIT_BAD_NAME = 2



def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keys", help="make a CURVE key pair (NAME.key, NAME.key_secret) in a directory")
    parser.add_argument("--dir", required=True, help="where the pair goes (created 0750 if missing)")
    parser.add_argument("name", help="the host's name in the topology's [hosts], or a client's name")
    parser.set_defaults(handler=keys)


def keys(args: argparse.Namespace) -> int:
    if not args.name or "/" in args.name or args.name.startswith("."):
        print(f"neurox keys: a name is a plain file name, got {args.name!r}", flush=True)
        return EXIT_BAD_NAME
    secret_file = os.path.join(args.dir, f"{args.name}.key_secret")
    if os.path.exists(secret_file):
        print(f"neurox keys: {secret_file} exists; kept", flush=True)
    else:
        public_file, _ = create_keys(args.dir, args.name)
        print(f"neurox keys: made {public_file} and its secret", flush=True)
    allowed = os.path.join(args.dir, ALLOWED_DIR)
    if not os.path.isdir(allowed):
        os.makedirs(allowed, mode=0o750)
        print(f"neurox keys: made {allowed}/ -- put every host's and admin client's NAME.key there", flush=True)
    return 0
