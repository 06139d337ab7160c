"""prequential accuracy on the digits beside a one-process numpy MLP of the same shape and settings"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import zmq

from ..ext import PRELOAD, Stream, digits, messenger_children
from ..neuron import Network, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--window", type=int, default=1, help="packets in flight (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="samples per packet (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=0.2,
                        help="per packet, on the mean gradient of its rows (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def reference_mlp(features: np.ndarray, targets: np.ndarray, sizes: list[int], lr: float, epochs: int,
                  batch: int, seed: int) -> tuple[float, float]:
    """The same MLP in one process with numpy (tanh, softmax + cross-entropy, mean gradient per batch),
    scored prequentially; returns (accuracy, samples/s)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]
    correct = seen = 0
    started = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(targets))
        for at in range(0, len(order), batch):
            rows = order[at:at + batch]
            x, t = features[rows], targets[rows]
            hs = [x]
            for k, (w, b) in enumerate(zip(weights, biases)):
                z = hs[-1] @ w + b
                hs.append(np.tanh(z) if k < len(weights) - 1 else z)
            p = np.exp(hs[-1] - hs[-1].max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            correct += int((p.argmax(axis=1) == t).sum())
            seen += len(rows)
            g = p.copy()
            g[np.arange(len(rows)), t] -= 1
            g /= len(rows)
            for k in reversed(range(len(weights))):
                grad_w, grad_b = hs[k].T @ g, g.sum(axis=0)
                if k:
                    g = (g @ weights[k].T) * (1 - hs[k] ** 2)
                weights[k] -= lr * grad_w
                biases[k] -= lr * grad_b
    return correct / seen, seen / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict:
    data = digits()
    topology = load_topology()
    topology.defaults["learning_rate"] = args.learning_rate
    sizes = [topology.input_width] + [sum(topology.width_of(n) for n in layer.neurons) for layer in topology.layers]
    reference, reference_rate = reference_mlp(data.features, data.targets, sizes, args.learning_rate, args.epochs,
                                              args.batch, args.seed)
    print(f"reference {'-'.join(map(str, sizes))} in one process: accuracy {reference:.3f}, "
          f"{reference_rate:,.0f} samples/s", flush=True)
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=args.window,
                            batch=args.batch, seed=args.seed)
            try:
                progress = stream.run(args.epochs, on_progress=lambda p: print(
                    f"  epoch {p.epoch + 1}: accuracy {p.accuracy:.3f}, {p.samples_per_s:,.0f} samples/s", flush=True))
            finally:
                stream.close()
    return {"accuracy": round(progress.accuracy, 4), "reference_accuracy": round(reference, 4),
            "difference": round(progress.accuracy - reference, 4), "samples_per_s": round(progress.samples_per_s),
            "reference_samples_per_s": round(reference_rate), "last_1000_accuracy": round(progress.rolling_accuracy, 4),
            "epochs": args.epochs, "window": args.window, "batch": args.batch, "learning_rate": args.learning_rate,
            "lost": progress.lost}
