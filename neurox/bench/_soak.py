"""steady load for a while: growth of RSS, file descriptors and threads over every process"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time

import psutil
import zmq

from ..ext import PRELOAD, MessengerClient, Stream, digits, messenger_children
from ..neuron import Network, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak (default: %(default)s)")
    parser.add_argument("--warm-up", type=float, default=10.0, help="seconds before the first sample")


def footprint(processes: list[psutil.Process]) -> dict:
    """Total RSS (MiB), open file descriptors and threads of the given processes."""
    rss = fds = threads = 0
    for process in processes:
        with process.oneshot():
            rss += process.memory_info().rss
            fds += process.num_fds()
            threads += process.num_threads()
    return {"rss_mib": rss / 2 ** 20, "fds": fds, "threads": threads}


def soak(network: Network, seconds: float, warm_up: float) -> dict:
    """Learn from a stream and answer MessengerIn requests for ``seconds``; compare footprints."""
    data = digits()
    stop = threading.Event()
    answered = {"ok": 0, "errors": 0}

    def ask_steadily() -> None:
        client = MessengerClient(network.messenger_in, zmq.Context.instance())
        try:
            i = 0
            while not stop.is_set():
                reply = client.ask(vector=data.features[i % len(data.targets)].tolist(), timeout=10)
                answered["ok" if reply["ok"] else "errors"] += 1
                i += 1
                time.sleep(0.005)
        finally:
            client.close()

    asker = threading.Thread(target=ask_steadily)
    asker.start()
    stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=2, rate=500)
    processes = psutil.Process(network.tree.launcher_proc.pid).children()
    try:
        stream.run(10 ** 6, should_stop=_after(warm_up))
        before = footprint(processes)
        progress = stream.run(10 ** 6, should_stop=_after(seconds))
        after = footprint(processes)
    finally:
        stop.set()
        asker.join(30)
        stream.close()
    return {"seconds": seconds, "processes": len(processes), "samples": progress.answered, "lost": progress.lost,
            "requests_ok": answered["ok"], "request_errors": answered["errors"],
            "rss_mib_before": round(before["rss_mib"], 1), "rss_mib_after": round(after["rss_mib"], 1),
            "rss_growth_mib": round(after["rss_mib"] - before["rss_mib"], 2),
            "fds_before": before["fds"], "fds_after": after["fds"],
            "threads_before": before["threads"], "threads_after": after["threads"]}


def _after(seconds: float):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(load_topology(), data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            return soak(network, args.seconds, args.warm_up)
