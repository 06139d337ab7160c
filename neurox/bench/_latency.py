"""MessengerIn -> MessengerOut round trips on an idle network, beside the floor diamond's"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from ..ext import PRELOAD, Client, digits, messenger_children
from ..neuron import Network, load_topology
from ._floor import FloorDiamond


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests (default: %(default)s)")


def run(args: argparse.Namespace) -> dict:
    floor = FloorDiamond()
    try:
        floor.latencies(200)
        floor_us = floor.latencies(args.requests) * 1e6
    finally:
        floor.close()
    vectors = digits().features
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(load_topology(), data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            client = Client(network.messenger_in)
            try:
                for i in range(200):
                    client.ask(vector=vectors[i].tolist())
                times = []
                for i in range(args.requests):
                    vector = vectors[i % len(vectors)].tolist()
                    started = time.perf_counter()
                    reply = client.ask(vector=vector)
                    times.append(time.perf_counter() - started)
                    if not reply["ok"]:
                        raise RuntimeError(f"request failed: {reply}")
            finally:
                client.close()
    us = np.array(times) * 1e6
    return {"p50_us": round(float(np.percentile(us, 50))), "p99_us": round(float(np.percentile(us, 99))),
            "floor_p50_us": round(float(np.percentile(floor_us, 50))),
            "floor_p99_us": round(float(np.percentile(floor_us, 99))),
            "ratio_p50": round(float(np.percentile(us, 50) / np.percentile(floor_us, 50)), 3),
            "requests": args.requests}
