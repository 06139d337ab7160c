"""``neurox reshape ...`` and ``neurox topology export``: change a running network's shape, write it back."""
from __future__ import annotations

import argparse
import json

import zmq

from ..neuron import Reshaping
from ..runtime import ControlError, KeysError
from ._discovery import add_remote_arguments, add_target_arguments, find_network, remote_of


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reshape", help="change the shape or settings of a running network")
    add_target_arguments(parser)
    add_remote_arguments(parser)
    ops = parser.add_subparsers(dest="op", required=True)
    p = _op(ops, "add-neuron", "add a neuron to an inner layer (seeded from its siblings)")
    p.add_argument("layer")
    p = _op(ops, "remove-neuron", "drain and remove a neuron")
    p.add_argument("id")
    for name, text in (("add-link", "link two neurons (forward only)"), ("remove-link", "unlink two neurons")):
        p = _op(ops, name, text)
        p.add_argument("src")
        p.add_argument("dst")
    p = _op(ops, "add-layer", "insert a layer after another, fully connected to its neighbours")
    p.add_argument("name")
    p.add_argument("--after", required=True)
    p.add_argument("--neurons", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a layer setting (repeatable)")
    p = _op(ops, "remove-layer", "remove an inner layer, bridging its neighbours")
    p.add_argument("name")
    p = _op(ops, "widen", "give every neuron of a layer more units, the network's answers unchanged")
    p.add_argument("layer")
    p.add_argument("units", type=int)
    p = _op(ops, "set", "change settings of a layer or a neuron (learning_rate, activation, ...)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--layer")
    target.add_argument("--neuron")
    p.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    _op(ops, "pause", "stop learning (answers go on)")
    _op(ops, "resume", "learn again")
    parser.set_defaults(handler=reshape)

    topology = sub.add_parser("topology", help="the live topology of a running network")
    add_target_arguments(topology)
    add_remote_arguments(topology)
    topology.add_argument("action", choices=["export", "show"], help="export: TOML; show: JSON")
    topology.add_argument("--output", "-o", help="write to this file instead of stdout")
    topology.set_defaults(handler=show_topology)


def _op(ops: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    """One op of ``neurox reshape``, which takes the network's options after it as well as before."""
    op = ops.add_parser(name, help=text)
    add_target_arguments(op, again=True)
    add_remote_arguments(op, again=True)
    return op


def _settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


def _client(args: argparse.Namespace) -> Reshaping | None:
    try:
        remote = remote_of(args)
    except (ValueError, KeysError) as exc:
        print(f"neurox: {exc}")
        return None
    if remote is not None:  # the front host's reshaper, through its control gateway
        return Reshaping(None, client=remote.client(zmq.Context.instance(), "root/reshaper", timeout=60.0))
    endpoint = args.endpoint or find_network(args.data_dir).get("reshaper")
    if endpoint is None:
        print(f"neurox: no running network found in {args.data_dir} (give --endpoint, or start `neurox run`)")
        return None
    return Reshaping(endpoint, timeout=60.0)


def reshape(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        return 2
    calls = {
        "add-neuron": lambda: client.add_neuron(args.layer),
        "remove-neuron": lambda: client.remove_neuron(args.id),
        "add-link": lambda: client.add_link(args.src, args.dst),
        "remove-link": lambda: client.remove_link(args.src, args.dst),
        "add-layer": lambda: client.add_layer(args.name, args.after, args.neurons, _settings(args.set)),
        "remove-layer": lambda: client.remove_layer(args.name),
        "widen": lambda: client.widen_layer(args.layer, args.units),
        "set": lambda: client.set_settings(_settings(args.settings), layer=args.layer, neuron=args.neuron),
        "pause": lambda: client.set_learning(False),
        "resume": lambda: client.set_learning(True),
    }
    try:
        print(json.dumps(calls[args.op]()))
        return 0
    except ControlError as exc:
        print(f"neurox reshape {args.op}: {exc}")
        return 1
    finally:
        client.close()


def show_topology(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        return 2
    try:
        text = client.export() if args.action == "export" else json.dumps(client.topology(), indent=1)
    except ControlError as exc:
        print(f"neurox topology: {exc}")
        return 1
    finally:
        client.close()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote the live topology ({'TOML' if args.action == 'export' else 'JSON'}, {len(text):,} bytes) "
              f"to {args.output}")
    else:
        print(text)
    return 0
