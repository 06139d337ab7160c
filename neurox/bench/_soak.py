"""steady load for a while: growth of RSS, file descriptors and threads over every process"""
from __future__ import annotations

import argparse
import tempfile
import time

import psutil
import zmq

from ..ext import PRELOAD, RUN_WINDOW, Stream, digits, messenger_children
from ..neuron import Network, load_topology
from ..runtime import SPARE_NAME
from ._asker import SteadyAsker


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
    """Learn from a stream and answer MessengerIn requests for ``seconds``; compare footprints.

    The footprint is taken after the warm-up, half-way and at the end: a leak grows in both halves,
    while caches that are still filling (reply cache, histograms) grow in the first half only."""
    data = digits()
    stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=RUN_WINDOW, rate=500)
    processes = [p for p in psutil.Process(network.tree.launcher_proc.pid).children()
                 if p.name() != SPARE_NAME]  # the launcher's spares come and go by design
    try:
        with SteadyAsker(network.messenger_in, data.features, pause_s=0.005, timeout_s=10) as asker:
            stream.run(10 ** 6, should_stop=_after(warm_up))
            before = footprint(processes)
            first = stream.run(10 ** 6, should_stop=_after(seconds / 2))
            middle = footprint(processes)
            second = stream.run(10 ** 6, should_stop=_after(seconds / 2))
            after = footprint(processes)
    finally:
        stream.close()
    answered = asker.outcomes
    return {"seconds": seconds, "processes": len(processes), "samples": first.answered + second.answered,
            "lost": first.lost + second.lost,
            "requests_ok": answered["ok"], "request_errors": answered["errors"],
            "rss_mib_before": round(before["rss_mib"], 1), "rss_mib_after": round(after["rss_mib"], 1),
            "rss_growth_mib": round(after["rss_mib"] - before["rss_mib"], 2),
            "rss_growth_second_half_mib": round(after["rss_mib"] - middle["rss_mib"], 2),
            "fds_before": before["fds"], "fds_after": after["fds"],
            "threads_before": before["threads"], "threads_after": after["threads"]}


def _after(seconds: float):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(load_topology(), data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            return soak(network, args.seconds, args.warm_up)
