"""SIGKILL neurons (then supervisors too) while clients send requests and the network learns"""
from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter

import psutil
import zmq

from ..ext import PRELOAD, Client, Origin, Stream, digits, messenger_children
from ..neuron import Network, load_topology
from ..runtime import ControlError
from ..runtime._fork import SPARE_NAME
from ..supervisor_tree import SupervisorClient, control_endpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the chaos (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=10000, help="MessengerIn requests (default: %(default)s)")
    parser.add_argument("--kill-every", type=float, default=0.25, help="seconds between neuron kills")
    parser.add_argument("--supervisor-every", type=float, default=2.0, help="seconds between supervisor kills (2nd half)")
    parser.add_argument("--recovery", type=float, default=60.0, help="seconds of learning after the chaos")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the digits learned before the chaos")


def evaluate(network: Network, data) -> float:
    """Inference-only accuracy over the whole set (no learning), through the real network."""
    origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "eval")
    try:
        waiting = {}
        correct = answered = 0
        rows = iter(range(len(data.targets)))
        pending = next(rows, None)
        deadline = time.monotonic() + 120
        while (pending is not None or waiting) and time.monotonic() < deadline:
            while pending is not None and len(waiting) < 16:
                waiting[origin.send(data.features[pending:pending + 1])] = int(data.targets[pending])
                pending = next(rows, None)
            if origin.returns.poll(2000):
                for result in origin.receive():
                    target = waiting.pop(result["packet"], None)
                    if target is not None:
                        answered += 1
                        correct += result["label"][0] == target
            else:
                waiting.clear()  # lost to a death; evaluation goes on with the rest
        return correct / max(answered, 1)
    finally:
        origin.close()


def tree_pids(network: Network) -> set[int]:
    """Every pid the supervision tree knows of: supervisors, workers, the event bus."""
    pids = {network.tree.root_pid, network.tree.bus_pid}
    stack = [network.control]
    while stack:
        client = SupervisorClient(stack.pop(), timeout=5.0)
        try:
            for child in client.which_children():
                if isinstance(child["pid"], int):
                    pids.add(child["pid"])
                    if child["type"] == "supervisor":
                        stack.append(child["control"])
        except ControlError:
            pass
        finally:
            client.close()
    return pids


class Clients:
    """Pipelining MessengerIn clients that record every reply per message id."""

    def __init__(self, endpoint: str, requests: int, clients: int, data):
        self.replies: Counter = Counter()
        self.outcomes: Counter = Counter()
        self.sent = 0
        self.duplicates_dropped = 0
        """Second replies the clients received and dropped (MessengerIn answered one request twice)."""
        self.lock = threading.Lock()
        per_client = requests // clients
        self.threads = [threading.Thread(target=self._run, args=(endpoint, c, per_client, data)) for c in range(clients)]

    def start(self, pace_s: float) -> None:
        self.pace_s = pace_s
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _run(self, endpoint: str, client_no: int, count: int, data) -> None:
        client = Client(endpoint, zmq.Context.instance())
        started = time.monotonic()
        try:
            for i in range(count):
                while time.monotonic() - started < i * self.pace_s or len(client.pending) >= 16:
                    for reply in client.results(timeout=0.005):
                        self._note(reply)
                row = (client_no * count + i) % len(data.targets)
                client.submit(f"{client_no}-{i}", vector=data.features[row].tolist(), target=int(data.targets[row]),
                              timeout_ms=2000)
                with self.lock:
                    self.sent += 1
            while client.pending:
                for reply in client.results(timeout=1.0):
                    self._note(reply)
        finally:
            with self.lock:
                self.duplicates_dropped += client.stats["duplicates"]
            client.close()

    def _note(self, reply: dict) -> None:
        with self.lock:
            self.replies[reply.get("message_hash_id")] += 1
            self.outcomes["replied" if reply.get("ok") else "errors"] += 1


def run(args: argparse.Namespace) -> dict:
    data = digits()
    with tempfile.TemporaryDirectory() as data_dir:
        network = Network(load_topology(), data_dir, extensions=messenger_children(data_dir, timeout_ms=2000),
                          preload=PRELOAD)
        with network:
            learn(network, data, epochs=args.epochs)
            accuracy_before = evaluate(network, data)
            print(f"accuracy before: {accuracy_before:.3f}", flush=True)
            clients = Clients(network.messenger_in, args.requests, args.clients, data)
            clients.start(pace_s=args.seconds * args.clients / args.requests)
            kills = Counter()
            chaos_end = time.monotonic() + args.seconds
            next_supervisor = time.monotonic() + args.seconds / 2
            rng = random.Random(0)
            while time.monotonic() < chaos_end:
                time.sleep(args.kill_every)
                topology = network.topology
                neuron = rng.choice(topology.neurons())
                if _kill_child(network, topology.supervisor_path(topology.layer_of(neuron).name), neuron):
                    kills["neurons"] += 1
                if time.monotonic() >= next_supervisor:
                    next_supervisor += args.supervisor_every
                    layer = rng.choice([l.name for l in topology.layers])
                    if _kill_child(network, *topology.supervisor_path(layer).rsplit("/", 1)):
                        kills["supervisors"] += 1
            clients.join()
            accuracy_end_of_chaos = evaluate(network, data)
            print(f"chaos over: {dict(kills)} kills, accuracy {accuracy_end_of_chaos:.3f}; "
                  f"learning for {args.recovery:.0f} s more", flush=True)
            learn(network, data, seconds=args.recovery)
            accuracy_after = evaluate(network, data)
            time.sleep(0.5)
            launcher_children = {p.pid for p in psutil.Process(network.tree.launcher_proc.pid).children()
                                 if p.name() != SPARE_NAME}  # the launcher's own spare is nobody's child yet
            orphans = len(launcher_children - tree_pids(network))
    duplicates = sum(n - 1 for n in clients.replies.values() if n > 1) + clients.duplicates_dropped
    replied_ids = len(clients.replies)
    return {"requests": clients.sent, "replied": clients.outcomes["replied"], "errors": clients.outcomes["errors"],
            "duplicates": duplicates, "lost": clients.sent - replied_ids, "orphans": orphans,
            "accuracy_before": round(accuracy_before, 4), "accuracy_end_of_chaos": round(accuracy_end_of_chaos, 4),
            "accuracy_after": round(accuracy_after, 4), "recovery_s": args.recovery,
            "neuron_kills": kills["neurons"], "supervisor_kills": kills["supervisors"], "seconds": args.seconds}


def learn(network: Network, data, epochs: int = 10 ** 6, seconds: float | None = None) -> None:
    """The network's own training stream, as ``neurox bench learn`` runs it (8 samples a packet)."""
    stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=2, batch=8)
    try:
        stream.run(epochs, should_stop=_after(seconds) if seconds is not None else lambda: False)
    finally:
        stream.close()


def _after(seconds: float):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def _kill_child(network: Network, supervisor_path: str, child_id: str) -> bool:
    """SIGKILL a running child of a supervisor; False if it is not running right now."""
    client = SupervisorClient(control_endpoint(network.run_dir, supervisor_path), timeout=2.0)
    try:
        pid = next((c["pid"] for c in client.which_children() if c["id"] == child_id), None)
    except ControlError:
        return False
    finally:
        client.close()
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
