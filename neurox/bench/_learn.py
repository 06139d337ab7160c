"""Prequential accuracy and speed of learning the digits over a sweep of windows, beside one process.

Its defaults are what ``neurox run`` does by default: the diamond, one sample a packet, the default
window (``DEFAULT_WINDOW``) opened by the same slow start (``DEFAULT_RAMP``, ``DEFAULT_KNEE``), the topology's
learning rate and staleness rule. For each window of the
sweep a fresh network learns ``--epochs`` passes; beside it:

* the **reference**: the same MLP in one process with numpy, one sample at a time, starting from the
  very weights the network's neurons start with, seeing the samples in the same order and scaling them
  online as MessengerIn does (the topology's ``[input]`` scaling) -- so the accuracies differ only by
  what pipelining does (different seeds alone move this accuracy by 0.02);
* per window, what the **simulated pipeline** (``_learn_reference``) gives with the same rule: the
  accuracy the rule should reach at that window when whole windows travel as bundles (its inputs
  scaled with the statistics of the whole stream, a look ahead the network does not have).

The top level reports the default window: ``accuracy`` against ``reference_accuracy`` and
``samples_per_s`` against ``reference_samples_per_s`` (``speed_ratio``).

``--topology NAME`` (a shipped shape, ``prod`` or ``test``, or a file) learns that shape instead, and the
diamond too in the same run with the same window, batch, epochs and seed (each with its own learning
rate unless ``--learning-rate`` sets both): ``diamond_accuracy`` beside ``accuracy``. The sweep is then
off unless asked for (a 100-neuron network takes minutes a window on two cores).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import zmq

from ..ext import PRELOAD, ScaleConfig, Scaler, Stream, digits, messenger_children, scale_config
from ..neuron import DEFAULT_KNEE, DEFAULT_RAMP, DEFAULT_WINDOW, SHAPES, Network, Topology, load_shape, neuron_control, topology_file
from ..runtime import ControlClient
from ._learn_reference import ReferencePipeline, fresh_params

SWEEP = (1, 4, 8, 16, 32)
REFERENCE_RUNS = 3
"""The reference's speed is the best of this many runs (a few seconds each): on a shared machine one run
can be slowed several times over by others' work, and the ratio should not flatter the network for it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", default="diamond",
                        help=f"a shipped shape ({', '.join(SHAPES)}) or a TOML file; not the diamond: the diamond "
                             "learns too, for diamond_accuracy (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="packets in flight at the top level (default: neurox run's, %(default)s)")
    parser.add_argument("--sweep", help="the other windows measured, comma-separated, or '' (default: "
                                        f"{','.join(map(str, SWEEP))} for the diamond, none for other shapes)")
    parser.add_argument("--ramp", type=int, default=DEFAULT_RAMP,
                        help="slow start: samples answered per one more packet in flight up to 8, then one more per "
                             "one answered (default: neurox run's, %(default)s; 0: none)")
    parser.add_argument("--batch", type=int, default=1, help="samples per packet (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, help="per packet (default: the topology's)")
    parser.add_argument("--staleness", choices=("delay", "stash"), help="the rule (default: the topology's)")
    parser.add_argument("--pace", action="store_true",
                        help="pace each origin's packets over the round trip instead of refilling in bursts")
    parser.add_argument("--seed", type=int, default=0)


def sample_order(samples: int, epochs: int, batch: int, seed: int) -> list[np.ndarray]:
    """The packets' rows in the order ``Stream`` (seeded alike) sends them."""
    rng = np.random.default_rng(seed)
    order = []
    for _ in range(epochs):
        permutation = rng.permutation(samples)
        order.extend(permutation[at:at + batch] for at in range(0, samples, batch))
    return order


def layer_params(topology: Topology, params: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The neurons' weights of each layer side by side: one layer of an MLP (fully connected layers)."""
    return [(np.hstack([params[n][0] for n in layer.neurons]), np.concatenate([params[n][1] for n in layer.neurons]))
            for layer in topology.layers]


def layer_sources(topology: Topology) -> list[list[int]]:
    """Per layer, the layers feeding it in network order (-1: the input): adjacent ones and ``[[skip]]`` ones.
    The one-process reference needs whole layers feeding every neuron of a layer alike."""
    index = {n: i for i, layer in enumerate(topology.layers) for n in layer.neurons}
    out = []
    for layer in topology.layers:
        found = {tuple(topology.inputs_of(n)) for n in layer.neurons}
        inputs = found.pop()
        sources = sorted({index.get(src, -1) for src in inputs})
        whole = [n for k in sources for n in (topology.layers[k].neurons if k >= 0 else [inputs[0]])]
        if found or list(inputs) != whole:
            raise ValueError(f"layer {layer.name}: the one-process reference needs whole layers linked alike")
        out.append(sources)
    return out


def reference_mlp(features: np.ndarray, targets: np.ndarray, layers: list, sources: list[list[int]], lr: float,
                  order: list[np.ndarray], scale: ScaleConfig = ScaleConfig()) -> tuple[float, float]:
    """The same network in one process (inputs scaled online as MessengerIn does, tanh, softmax + cross-entropy,
    mean gradient per packet; each layer fed by its ``sources``), scored prequentially; returns (accuracy,
    samples/s)."""
    weights = [w.copy() for w, _ in layers]
    biases = [b.copy() for _, b in layers]
    last = len(weights) - 1
    scaler = Scaler(features.shape[1], scale)
    correct = seen = 0
    started = time.perf_counter()
    for rows in order:
        scaler.learn(features[rows])
        x, t = scaler.transform(features[rows]), targets[rows]
        hs, ins = [x], []
        for k, (w, b) in enumerate(zip(weights, biases)):
            ins.append(hs[sources[k][0] + 1] if len(sources[k]) == 1 else np.hstack([hs[s + 1] for s in sources[k]]))
            z = ins[k] @ w + b
            hs.append(np.tanh(z) if k < last else z)
        p = np.exp(hs[-1] - hs[-1].max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        correct += int((p.argmax(axis=1) == t).sum())
        seen += len(rows)
        p[np.arange(len(rows)), t] -= 1
        grads: list = [0.0] * len(weights)
        grads[last] = p / len(rows)
        for k in reversed(range(len(weights))):
            g = grads[k] if k == last else grads[k] * (1 - hs[k + 1] ** 2)
            grad_w, grad_b = ins[k].T @ g, g.sum(axis=0)
            dx, at = g @ weights[k].T, 0
            for s in sources[k]:
                width = hs[s + 1].shape[1]
                if s >= 0:
                    grads[s] = grads[s] + dx[:, at:at + width]
                at += width
            weights[k] -= np.float32(lr) * grad_w
            biases[k] -= np.float32(lr) * grad_b
    return correct / seen, seen / (time.perf_counter() - started)


def mean_bundles(network: Network) -> dict[str, float]:
    """Mean packets per forward bundle, per layer (the neurons' ``forwards`` over ``forward_bundles``)."""
    out = {}
    for layer in network.topology.layers:
        forwards = bundles = 0
        for n in layer.neurons:
            client = ControlClient(zmq.Context.instance(), neuron_control(network.run_dir, network.topology, n), 5.0)
            try:
                metrics = client.call("metrics")
            finally:
                client.close()
            forwards += metrics["forwards"]
            bundles += metrics["forward_bundles"]
        out[layer.name] = round(forwards / bundles, 2) if bundles else 0.0
    return out


def learn_once(topology: Topology, data, window: int, args: argparse.Namespace) -> dict:
    """A fresh network learns the data with ``window`` packets in flight."""
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=window,
                            batch=args.batch, seed=args.seed, pace=args.pace, ramp=args.ramp)
            try:
                progress = stream.run(args.epochs)
            finally:
                stream.close()
            bundles = mean_bundles(network)
    return {"window": window, "accuracy": round(progress.accuracy, 4), "samples_per_s": round(progress.samples_per_s),
            "last_1000_accuracy": round(progress.rolling_accuracy, 4), "lost": progress.lost, "mean_bundle": bundles}


def configured(name: str, args: argparse.Namespace) -> Topology:
    """A shape with the run's overrides of its learning rate and staleness rule."""
    topology = load_shape(name)
    if args.learning_rate is not None:
        topology.defaults["learning_rate"] = args.learning_rate
    if args.staleness is not None:
        topology.defaults["staleness"] = args.staleness
    return topology


def run(args: argparse.Namespace) -> dict:
    data = digits()
    topology = configured(args.topology, args)
    diamond = topology_file(args.topology) == topology_file("diamond")
    sweep_arg = args.sweep if args.sweep is not None else ",".join(map(str, SWEEP)) if diamond else ""
    lr, rule = float(topology.defaults["learning_rate"]), topology.defaults["staleness"]
    params = fresh_params(topology)
    order = sample_order(len(data.targets), args.epochs, args.batch, args.seed)
    layers = layer_params(topology, params)
    sources = layer_sources(topology)
    scale = scale_config(getattr(topology, "input", None))
    runs = [reference_mlp(data.features, data.targets, layers, sources, lr, order, scale) for _ in range(REFERENCE_RUNS)]
    reference, reference_rate = runs[0][0], max(rate for _, rate in runs)
    print(f"reference in one process, one sample at a time, the network's first weights: accuracy {reference:.3f}, "
          f"{reference_rate:,.0f} samples/s", flush=True)
    windows = sorted({args.window, *(int(w) for w in sweep_arg.split(",") if w.strip())})
    sweep = []
    whole = Scaler(data.features.shape[1], scale)
    whole.learn(data.features)
    for window in windows:
        row = learn_once(topology, data, window, args)
        simulated = ReferencePipeline(topology, params, rule, int(topology.defaults["staleness_group"])).stream(
            whole.transform(data.features), data.targets, window, args.epochs, args.seed, args.batch)
        row["simulated_accuracy"] = round(simulated.accuracy, 4)
        row["speed_ratio"] = round(row["samples_per_s"] / reference_rate, 3)
        print(f"  window {window:3d}: accuracy {row['accuracy']:.3f} (simulated {row['simulated_accuracy']:.3f}), "
              f"{row['samples_per_s']:,} samples/s ({row['speed_ratio']:.2f}x), bundles {row['mean_bundle']}",
              flush=True)
        sweep.append(row)
    top = next(row for row in sweep if row["window"] == args.window)
    if diamond:
        diamond_accuracy = top["accuracy"]
    else:
        diamond_accuracy = learn_once(configured("diamond", args), data, args.window, args)["accuracy"]
        print(f"the diamond, same run and settings: accuracy {diamond_accuracy:.3f}", flush=True)
    return {"topology": topology.name, "layers": len(topology.layers), "neurons": len(topology.neurons()),
            "accuracy": top["accuracy"], "diamond_accuracy": diamond_accuracy,
            "diamond_difference": round(top["accuracy"] - diamond_accuracy, 4), "reference_accuracy": round(reference, 4),
            "difference": round(top["accuracy"] - reference, 4), "samples_per_s": top["samples_per_s"],
            "reference_samples_per_s": round(reference_rate), "speed_ratio": top["speed_ratio"],
            "last_1000_accuracy": top["last_1000_accuracy"], "mean_bundle": top["mean_bundle"], "lost": top["lost"],
            "window": args.window, "ramp": args.ramp, "knee": DEFAULT_KNEE, "pace": args.pace, "batch": args.batch, "learning_rate": lr,
            "staleness": rule, "epochs": args.epochs, "sweep": sweep}
