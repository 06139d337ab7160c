"""diamond learning samples/s beside the forward-only floor, one sample a message, and batched"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import zmq

from ..ext import PRELOAD, Dataset, Stream, messenger_children
from ..neuron import Network, load_topology
from ._floor import FloorDiamond


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=20000, help="samples per measurement (default: %(default)s)")
    parser.add_argument("--window", type=int, default=64, help="packets in flight (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=32, help="samples per message, batched run (default: %(default)s)")


def _learning_rate(network: Network, dataset: Dataset, samples: int, window: int, batch: int) -> float:
    epochs = max(1, samples // len(dataset.targets))
    stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, dataset, window=window, batch=batch)
    try:
        stream.run(1)  # warm-up: every neuron has seen traffic, every socket is connected
        progress = stream.run(epochs)
    finally:
        stream.close()
    return progress.answered / progress.elapsed_s


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    samples = 4096
    dataset = Dataset(rng.random((samples, 64), dtype=np.float32), rng.integers(0, 10, samples), [str(i) for i in range(10)])
    floor = FloorDiamond()
    try:
        floor.throughput(2000, args.window)
        floor_rate = floor.throughput(args.samples, args.window)
    finally:
        floor.close()
    print(f"floor: {floor_rate:,.0f} samples/s", flush=True)
    with tempfile.TemporaryDirectory() as data_dir:
        network = Network(load_topology(), data_dir, extensions=messenger_children(data_dir), preload=PRELOAD)
        with network:
            learning = _learning_rate(network, dataset, args.samples, args.window, 1)
            print(f"learning, one sample a message: {learning:,.0f} samples/s", flush=True)
            batched = _learning_rate(network, dataset, args.samples * 8, args.window, args.batch)
            print(f"learning, {args.batch} samples a message: {batched:,.0f} samples/s", flush=True)
    return {"learning_samples_per_s": round(learning), "floor_samples_per_s": round(floor_rate),
            "ratio": round(learning / floor_rate, 3), "batched_samples_per_s": round(batched),
            "batch": args.batch, "window": args.window}
