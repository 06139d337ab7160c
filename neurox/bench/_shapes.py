"""A release shape end to end with a neuron SIGKILLed mid-stream: every request answered, accuracy reported.

A fresh network of the shape (``prod`` by default: 19 layers, 100 neurons; or ``test``, ``diamond``, a
file) learns the digits but ``--requests`` held-out rows, for ``--epochs``, as ``neurox run`` does
(prequential accuracy). Then two rounds of the same requests (the held-out rows, no target: inference
only) go through MessengerIn -> MessengerOut with the project's Client, ``--in-flight`` at a time: the
**baseline** round with nothing killed, and the **killed** round, in which a hidden neuron (the middle
one of the widest layer unless ``--victim`` says) is SIGKILLed after ``--kill-at`` requests and
replaced by its supervisor (``replaced_s``: from the kill until the replacement answers). Per round:
requests, answered (an answer), errors (an explicit final error, such as a deadline), lost (no final
reply at all: must be 0), duplicates (must be 0), accuracy of the answers. ``accuracy`` is the killed
round's beside ``baseline_accuracy`` (``ratio``); ``every_request_answered`` says whether each request
of the killed round got exactly one final reply, and it was an answer.
"""
from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from dataclasses import replace

import numpy as np
import zmq

from ..ext import PRELOAD, Client, Stream, digits, messenger_children
from ..neuron import SHAPES, Network, Topology, load_shape, neuron_control
from ..runtime import ControlError, call


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", default="prod",
                        help=f"a shipped shape ({', '.join(SHAPES)}) or a TOML file (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="passes over the digits learnt first, as bench learn (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=300, help="requests per round (default: %(default)s)")
    parser.add_argument("--in-flight", type=int, default=8, help="requests in flight at once (default: %(default)s)")
    parser.add_argument("--kill-at", type=int, help="the killed round's request after which the victim dies "
                                                    "(default: a third of --requests)")
    parser.add_argument("--victim", help="the neuron killed (default: the middle one of the widest hidden layer)")
    parser.add_argument("--deadline", type=float, default=20.0, help="seconds a request may take, retries included "
                                                                     "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def default_victim(topology: Topology) -> str:
    """The middle neuron of the widest hidden layer (the first such layer): a death every path feels."""
    hidden = topology.layers[1:-1] or topology.layers
    widest = max(hidden, key=lambda layer: len(layer.neurons))
    return widest.neurons[len(widest.neurons) // 2]


def score(sent: dict, replies: list[dict]) -> dict:
    """A round's books from the requests sent (id -> true class) and every final reply received."""
    final: dict = {}
    duplicates = 0
    for reply in replies:
        duplicates += reply.get("message_hash_id") in final
        final.setdefault(reply.get("message_hash_id"), reply)
    answered = {m: r for m, r in final.items() if m in sent and r.get("ok")}
    right = sum(int(r["label"]) == sent[m] for m, r in answered.items())
    errors: dict[str, int] = {}
    for m, r in final.items():
        if m in sent and not r.get("ok"):
            errors[str(r.get("error"))] = errors.get(str(r.get("error")), 0) + 1
    return {"requests": len(sent), "answered": len(answered), "errors": errors,
            "lost": sum(m not in final for m in sent), "duplicates": duplicates,
            "accuracy": round(right / len(answered), 4) if answered else 0.0}


def ask_round(network: Network, data, rows: np.ndarray, args, kill_at: int | None = None) -> tuple[dict, dict]:
    """Send the rows' requests, ``in_flight`` at a time; kill the victim after ``kill_at`` of them. The
    round's books, and what happened to the victim."""
    client = Client(network.messenger_in, zmq.Context.instance(), deadline_s=args.deadline)
    victim = args.victim or default_victim(network.topology)
    killed: dict = {}
    watch = None
    sent, replies = {}, []
    try:
        for i, row in enumerate(rows):
            while len(client.pending) >= args.in_flight:
                replies += client.results(timeout=0.05)
            sent[client.submit(vector=data.features[row].tolist())] = int(data.targets[row])
            if kill_at is not None and i + 1 == kill_at:
                killed = kill(network, victim)
                watch = threading.Thread(target=lambda: killed.update(replaced_s=replaced_after(network, victim,
                                                                                                killed)))
                watch.start()  # the replacement is timed while the requests go on
        while client.pending:
            replies += client.results(timeout=1.0)
        replies += client.results(timeout=0.2)  # a duplicate would come now
        books = score(sent, replies)
        books["duplicates"] += client.stats["duplicates"]
    finally:
        client.close()
        if watch is not None:
            watch.join()
    return books, killed


def kill(network: Network, victim: str) -> dict:
    pid = _pid(network, victim)
    os.kill(pid, signal.SIGKILL)
    return {"victim": victim, "pid": pid, "at": time.monotonic()}


def replaced_after(network: Network, victim: str, killed: dict, timeout: float = 60.0) -> float | None:
    """Seconds from the kill until the victim's replacement answers its control socket (None: not in time)."""
    while time.monotonic() < killed["at"] + timeout:
        pid = _pid(network, victim, timeout=0.5)
        if pid not in (None, killed["pid"]):
            return round(time.monotonic() - killed["at"], 2)
        time.sleep(0.05)
    return None


def _pid(network: Network, neuron: str, timeout: float = 5.0) -> int | None:
    try:
        return call(zmq.Context.instance(), neuron_control(network.run_dir, network.topology, neuron), "status",
                    timeout=timeout)["pid"]
    except ControlError:
        return None


def run(args: argparse.Namespace) -> dict:
    data = digits()
    topology = load_shape(args.topology).fit_to_data(data.width, data.outputs, True)
    rows = np.random.default_rng(args.seed).choice(len(data.targets), args.requests, replace=False)
    learnt = np.setdiff1d(np.arange(len(data.targets)), rows)
    training = replace(data, features=data.features[learnt], targets=data.targets[learnt])
    kill_at = args.kill_at if args.kill_at is not None else max(1, args.requests // 3)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            up_s = time.monotonic() - started
            print(f"{topology.name}: {len(topology.layers)} layers, {len(topology.neurons())} neurons up in "
                  f"{up_s:.1f} s", flush=True)
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, training, seed=args.seed)
            try:
                progress = stream.run(args.epochs) if args.epochs else None
            finally:
                stream.close()
            if progress is not None:
                print(f"learnt {args.epochs} epoch(s): prequential accuracy {progress.accuracy:.3f}, "
                      f"{progress.samples_per_s:,.0f} samples/s, lost {progress.lost}", flush=True)
            baseline, _ = ask_round(network, data, rows, args)
            print(f"baseline round: {baseline}", flush=True)
            killed_books, killed = ask_round(network, data, rows, args, kill_at)
            print(f"killed round ({killed['victim']} SIGKILLed after request {kill_at}, replaced in "
                  f"{killed['replaced_s']} s): {killed_books}", flush=True)
    every = killed_books["answered"] == killed_books["requests"] and killed_books["duplicates"] == 0
    return {"topology": topology.name, "layers": len(topology.layers), "neurons": len(topology.neurons()),
            "epochs": args.epochs, "up_s": round(up_s, 1),
            "learn_accuracy": round(progress.accuracy, 4) if progress else None,
            "learn_lost": progress.lost if progress else None,
            "requests": args.requests, "kill_at": kill_at, "victim": killed["victim"],
            "replaced_s": killed["replaced_s"], "baseline": baseline, "killed": killed_books,
            "accuracy": killed_books["accuracy"], "baseline_accuracy": baseline["accuracy"],
            "ratio": round(killed_books["accuracy"] / baseline["accuracy"], 3) if baseline["accuracy"] else None,
            "every_request_answered": every, "seconds": round(time.monotonic() - started, 1)}
