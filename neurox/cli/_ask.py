"""``neurox ask``: send one request to a running network's MessengerIn and print the answer.

Values go in the user's units (the network scales them as it scaled what it learnt from); ``--random``
draws a row of the dataset the network is learning (``run.json`` says which). The answer is printed
for people -- the class name and the probabilities, or the regressed value(s) -- then as JSON.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from ..ext import Client, DatasetError, ExtensionError, TextEncoder, load_dataset
from ._discovery import add_target_arguments, find_network


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ask", help="send one request to MessengerIn and print the answer (and the reply as JSON)")
    add_target_arguments(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--vector", help="comma-separated numbers, in the units of the data the network learns")
    what.add_argument("--text", help="text, encoded by MessengerIn")
    what.add_argument("--random", action="store_true",
                      help="a random row of the dataset the network is learning (shows its true class or value)")
    parser.add_argument("--encoding", help="the text encoding the network must have (default: whatever its "
                        "topology's [text] table says)")
    parser.add_argument("--target", type=int, help="learn from this request too (the class index)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer, retries included (default: %(default)s)")
    parser.set_defaults(handler=ask)


class _Refused(Exception):
    """A request that cannot be made, in one line."""


def ask(args: argparse.Namespace) -> int:
    found = {} if args.endpoint else find_network(args.data_dir)
    endpoint = args.endpoint or found.get("messenger_in")
    if endpoint is None:
        print(f"neurox ask: no running network found in {args.data_dir} (give --endpoint, or start `neurox run`)")
        return 2
    try:
        request = _request(args, found)
    except _Refused as exc:
        print(f"neurox ask: {exc}")
        return 2
    client = Client(endpoint, deadline_s=args.timeout)
    try:
        reply = client.ask(**request)
    finally:
        client.close()
    if reply.get("ok"):
        print(describe_answer(reply))
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


def _request(args: argparse.Namespace, found: dict) -> dict:
    request: dict = {}
    if args.vector:
        try:
            request["vector"] = [float(v) for v in args.vector.split(",")]
        except ValueError:
            raise _Refused("--vector takes comma-separated numbers") from None
    elif args.text is not None:
        request.update(text=args.text, **({"encoding": args.encoding} if args.encoding else {}))
    else:
        request["vector"] = _random_row(args, found)
    if args.target is not None:
        request["target"] = args.target
    return request


def _random_row(args: argparse.Namespace, found: dict) -> list[float]:
    """A random row of the dataset the network learns (as ``neurox run`` wrote it in run.json)."""
    dataset = found.get("dataset")
    if not isinstance(dataset, dict):
        raise _Refused(f"the network in {args.data_dir} learns from no dataset that --random could draw from "
                       f"(it was not started by `neurox run`); give --vector or --text")
    try:
        data = load_dataset(dataset.get("path"), dataset.get("target"), dataset.get("task", "auto"),
                            dataset.get("missing", "error"), TextEncoder.from_table(dataset.get("text")))
    except (DatasetError, ExtensionError) as exc:
        raise _Refused(f"--random: the dataset the network learns cannot be read now: {exc}") from None
    index = int(np.random.default_rng().integers(len(data.targets)))
    truth = f"class {data.classes[data.targets[index]]!r}" if data.classes is not None else \
        f"value {_numbers(data.targets[index])}"
    print(f"sample {index} of {dataset.get('path') or 'the bundled digits'}: {data.width} features, true {truth}")
    return data.features[index].astype(float).tolist()


def describe_answer(reply: dict) -> str:
    """The answer for people: ``class 'x' (p 0.93); probabilities: ...``, or ``value 151.2``."""
    probabilities = reply.get("probabilities")
    if isinstance(probabilities, dict) and probabilities:
        ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])
        return (f"class {reply.get('text', ranked[0][0])!r} (p {ranked[0][1]:.3f}); probabilities: "
                + ", ".join(f"{name} {p:.3f}" for name, p in ranked[:10]))
    if "label" in reply:
        return f"class {reply.get('text', reply['label'])!r}"
    return f"value {_numbers(reply.get('output', []))}"


def _numbers(values) -> str:
    values = np.atleast_1d(np.asarray(values, dtype=float))
    return f"{values[0]:.6g}" if values.size == 1 else "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
