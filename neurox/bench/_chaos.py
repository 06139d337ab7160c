"""every fault an operator meets, while clients ask and the network learns: lost, duplicated, orphaned, accuracy back

The network learns the digits as ``neurox run`` does by default, then clients (``neurox.Client``, the
project's own) send requests at a steady rate while a learning stream goes on and the faults of
:mod:`neurox.bench._faults` are injected one kind after another. The host starts the network again
whenever it has ended (as systemd does for ``neurox node``). Per fault kind: requests sent, answered,
ended in an explicit error, lost (no final reply at all) and answered twice; accuracy before the faults,
at their end, and 30 s and 60 s after; orphans at the end.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter

import zmq

from ..ext import RUN_BATCH, RUN_WINDOW, Client, Origin, Stream, digits
from ..neuron import load_topology
from ._faults import APPLY, FAULTS, Burners, Host, SmallDisk, orphans
from ._options import chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="fault kinds, in order (default: all: %(default)s)")
    parser.add_argument("--fault-seconds", type=float, default=8.0, help="length of each fault kind (default: %(default)s)")
    parser.add_argument("--load", type=int, default=0, help="CPU-burning processes beside it (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=40.0, help="client requests per second (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the digits learnt before the faults")
    parser.add_argument("--recovery", type=float, default=60.0, help="seconds of learning after the faults")
    parser.add_argument("--eval-samples", type=int, default=0,
                        help="samples each accuracy is measured on (default: 0, the whole set)")
    parser.add_argument("--seed", type=int, default=0)


def evaluate(network, data, samples: int = 0) -> float:
    """Inference-only accuracy over the first ``samples`` rows (0: the whole set; no learning), through the
    real network."""
    origin = Origin(zmq.Context.instance(), network.run_dir, network.topology, "eval", remember=False)
    try:
        waiting = {}
        correct = answered = 0
        rows = iter(range(min(samples or len(data.targets), len(data.targets))))
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


class Requests:
    """Client threads sending paced requests; every final reply is booked under the fault during which
    its request was sent."""

    def __init__(self, endpoint: str, clients: int, rate: float, data, phase: str):
        self.phase = phase
        self.sent: Counter = Counter()
        self.outcomes: dict[str, Counter] = {}
        self.replies: Counter = Counter()
        self.redundant = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(endpoint, c, clients / rate, data), daemon=True)
                        for c in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self, endpoint: str, client_no: int, pause_s: float, data) -> None:
        client = Client(endpoint, zmq.Context.instance())
        phase_of: dict[str, str] = {}
        i = 0
        next_at = time.monotonic()
        try:
            while not self.stopping.is_set() or client.pending:
                if not self.stopping.is_set() and time.monotonic() >= next_at:
                    row = (client_no * 7919 + i) % len(data.targets)
                    message_id = client.submit(f"{client_no}-{i}", vector=data.features[row].tolist(),
                                               target=int(data.targets[row]), timeout_ms=2000)
                    phase_of[message_id] = self.phase
                    with self.lock:
                        self.sent[self.phase] += 1
                    i += 1
                    next_at += pause_s
                for reply in client.results(timeout=max(0.0, min(0.05, next_at - time.monotonic()))):
                    self._book(phase_of.pop(reply["message_hash_id"]), reply)
        finally:
            with self.lock:
                self.redundant += client.stats["duplicates"]
            client.close()

    def _book(self, phase: str, reply: dict) -> None:
        with self.lock:
            self.replies[reply["message_hash_id"]] += 1
            self.outcomes.setdefault(phase, Counter())["answered" if reply["ok"] else "errors"] += 1

    def finish(self) -> None:
        """Stop sending; wait until every request sent has its final reply (or its deadline passed)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)

    def report(self, phase: str) -> dict:
        outcome = self.outcomes.get(phase, Counter())
        sent = self.sent[phase]
        return {"sent": sent, "answered": outcome["answered"], "errors": outcome["errors"],
                "lost": sent - outcome["answered"] - outcome["errors"]}


class Learning:
    """The network's own learning stream, in a thread, for as long as the bench runs (as `neurox run`)."""

    def __init__(self, host: Host, data, seed: int):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(host, data, seed))
        self.thread.start()

    def _run(self, host: Host, data, seed: int) -> None:
        stream = Stream(zmq.Context.instance(), host.run_dir, host.topology, data, window=RUN_WINDOW,
                        batch=RUN_BATCH, seed=seed, name="learning")
        try:
            stream.run(10 ** 6, should_stop=self.stop.is_set)
        finally:
            stream.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


class Keeper:
    """Starts the network again whenever it has ended, as systemd's Restart= does for `neurox node`."""

    def __init__(self, host: Host):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(host,))
        self.thread.start()

    def _run(self, host: Host) -> None:
        while not self.stop.wait(0.2):
            host.keep_up()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)


def run(args: argparse.Namespace) -> dict:
    faults = chosen(args.faults, FAULTS, "fault kinds")
    data = digits()
    rng = random.Random(args.seed)
    base = tempfile.mkdtemp(prefix="nx-chaos-")
    disk = SmallDisk(os.path.join(base, "disk")) if "disk" in faults else None
    data_dir = os.path.join(disk.path if disk else base, "net")
    host = Host(load_topology(), data_dir, os.path.join(base, "run"))
    burners = Burners(args.load)
    results: dict = {"faults": {}, "load": args.load, "fault_seconds": args.fault_seconds}
    try:
        host.start()
        warmup = Stream(zmq.Context.instance(), host.run_dir, host.topology, data, window=RUN_WINDOW,
                        batch=RUN_BATCH, seed=args.seed, name="warmup")
        try:
            warmup.run(args.epochs)
        finally:
            warmup.close()
        results["accuracy_before"] = round(evaluate(host.network, data, args.eval_samples), 4)
        print(f"accuracy before: {results['accuracy_before']:.3f} (load: {args.load} burning processes)", flush=True)
        learning, keeper = Learning(host, data, args.seed + 1), Keeper(host)
        requests = Requests(host.network.messenger_in, args.clients, args.rate, data, faults[0])
        try:
            for fault in faults:
                host.wait_healthy()
                requests.phase = fault
                restarts = host.restarts
                injected = APPLY[fault](host, rng, args.fault_seconds)
                host.wait_healthy()
                accuracy = round(evaluate(host.network, data, args.eval_samples), 4)
                results["faults"][fault] = {"injected": injected, "network_restarts": host.restarts - restarts,
                                            "accuracy_after": accuracy}
                print(f"{fault}: injected {injected}, network restarts {host.restarts - restarts}, "
                      f"accuracy {accuracy:.3f}", flush=True)
            requests.phase = "after"
            results["healthy_after_faults"] = host.wait_healthy()
            time.sleep(2.0)
            requests.finish()
            results["accuracy_end"] = round(evaluate(host.network, data, args.eval_samples), 4)
            for after in (30, 60):
                time.sleep(30.0 * args.recovery / 60.0)
                results[f"accuracy_{after}s"] = round(evaluate(host.network, data, args.eval_samples), 4)
                print(f"accuracy {after * args.recovery / 60:.0f} s after the faults: "
                      f"{results[f'accuracy_{after}s']:.3f}", flush=True)
        finally:
            requests.finish()
            keeper.close()
            learning.close()
        results["orphans"] = orphans(host)
    finally:
        burners.close()
        host.stop()
        if disk is not None:
            disk.close()
        shutil.rmtree(base, ignore_errors=True)
    for fault in faults:
        results["faults"][fault].update(requests.report(fault))
    results["after_faults"] = requests.report("after")
    duplicates = sum(n - 1 for n in requests.replies.values() if n > 1)
    lost = sum(f["lost"] for f in results["faults"].values()) + results["after_faults"]["lost"]
    results.update(lost=lost, duplicates=duplicates,
                   redundant_replies_dropped=requests.redundant, network_restarts=host.restarts,
                   start_failures=host.start_failures[:3],
                   recovered_accuracy_ratio=round(results["accuracy_60s"] / max(results["accuracy_before"], 1e-9), 4))
    return results
