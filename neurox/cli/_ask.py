"""``neurox ask``: send one request to a running network's MessengerIn and print the reply."""
from __future__ import annotations

import argparse
import json

import numpy as np

from ..ext import Client, digits
from ._discovery import add_target_arguments, find_network


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ask", help="send one request to MessengerIn and print the reply as JSON")
    add_target_arguments(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--vector", help="comma-separated numbers")
    what.add_argument("--text", help="text, encoded by MessengerIn")
    what.add_argument("--random", action="store_true", help="a random sample of the bundled digits (shows its true label)")
    parser.add_argument("--encoding", help="the text encoding the network must have (default: whatever its "
                        "topology's [text] table says)")
    parser.add_argument("--target", type=int, help="learn from this request too (the class index)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer, retries included (default: %(default)s)")
    parser.set_defaults(handler=ask)


def ask(args: argparse.Namespace) -> int:
    endpoint = args.endpoint or find_network(args.data_dir).get("messenger_in")
    if endpoint is None:
        print(f"neurox ask: no running network found in {args.data_dir} (give --endpoint, or start `neurox run`)")
        return 2
    request: dict = {}
    if args.vector:
        try:
            request["vector"] = [float(v) for v in args.vector.split(",")]
        except ValueError:
            print("neurox ask: --vector takes comma-separated numbers")
            return 2
    elif args.text is not None:
        request.update(text=args.text, **({"encoding": args.encoding} if args.encoding else {}))
    else:
        data = digits()
        index = int(np.random.default_rng().integers(len(data.targets)))
        request["vector"] = data.features[index].tolist()
        print(f"sample {index} of the digits, true label {data.targets[index]}")
    if args.target is not None:
        request["target"] = args.target
    client = Client(endpoint, deadline_s=args.timeout)
    try:
        reply = client.ask(**request)
    finally:
        client.close()
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1
