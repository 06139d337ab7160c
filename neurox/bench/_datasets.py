"""public tabular sets (and, with --drift, drifting streams) through a real network with a user's defaults,
beside the same MLP in one process, scikit-learn's MLP and River's online pipelines, in the same order

Each classification set (digits, iris, wine, breast cancer; scikit-learn's bundled copies) and the
diabetes regression is written as a CSV file and learnt as ``neurox run --data F.csv --epochs 3``
would: the default topology fitted to it, its default scaling, window and batch, the file read by the
same reader. The references see the same samples in the same order (the stream's shuffles), each
scored prequentially. The last line carries, beside each set's figures, ``min_accuracy_margin`` (the
smallest, over the classification sets, of NeuroX's accuracy minus the best reference's of the
in-process MLP, scikit-learn's MLP and River's logistic regression; the tree is reported, not a bar),
``rmse_ratio`` (diabetes: NeuroX's RMSE over the in-process reference's) and, with ``--drift``,
``drift_min_margin`` (over River's SEA, Agrawal and Hyperplane streams with concept drift, 10,000
samples each in stream order: NeuroX's accuracy on the last 1,000 minus River's logistic regression's).
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import zmq

from ..ext import (PRELOAD, RUN_BATCH, RUN_WINDOW, Dataset, Stream, load_dataset, network_children,
                   scale_config)
from ..neuron import DEFAULT_KNEE, DEFAULT_RAMP, Network, load_topology
from ._options import chosen
from ._references import Score, in_process, river_model, sklearn_mlp

SETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
DRIFT_SAMPLES = 10_000
REFERENCES = ("in_process", "sklearn_mlp", "river_logistic")
"""The references whose best NeuroX is held to (the Hoeffding tree is reported beside them)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated, of %(default)s")
    parser.add_argument("--drift", action="store_true", help="also River's drifting streams (SEA, Agrawal, Hyperplane)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ramp", type=int, default=DEFAULT_RAMP,
                        help="slow start: samples answered per one more packet in flight (default: neurox run's, "
                             "%(default)s; 0: none)")


def sklearn_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled scikit-learn set in its own units (diabetes unscaled: the progression 25..346)."""
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    data = loader(scaled=False) if name == "diabetes" else loader()
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target)


def drift_stream(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10,000 samples of a River generator with concept drift, in stream order."""
    from river.datasets import synth

    if name == "sea":
        stream = synth.ConceptDriftStream(synth.SEA(variant=0, seed=seed), synth.SEA(variant=2, seed=seed + 1),
                                          position=DRIFT_SAMPLES // 2, width=500, seed=seed)
    elif name == "agrawal":
        stream = synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=seed),
                                          synth.Agrawal(classification_function=2, seed=seed + 1),
                                          position=DRIFT_SAMPLES // 2, width=500, seed=seed)
    else:
        stream = synth.Hyperplane(seed=seed, n_features=10, n_drift_features=5, mag_change=0.001)
    rows, targets = [], []
    for x, y in stream.take(DRIFT_SAMPLES):
        rows.append([float(v) for v in x.values()])
        targets.append(int(y))
    return np.asarray(rows), np.asarray(targets)


def write_csv(path: str, features: np.ndarray, targets: np.ndarray) -> None:
    header = ",".join(f"x{j}" for j in range(features.shape[1])) + ",target"
    np.savetxt(path, np.column_stack([features, targets]), delimiter=",", header=header, comments="", fmt="%.10g")


def neurox_score(dataset: Dataset, epochs: int, seed: int, shuffle: bool, ramp: int = DEFAULT_RAMP) -> tuple[Score, list[np.ndarray]]:
    """The real network, as ``neurox run`` starts it for this data; and the sample order it was fed."""
    topology = load_topology().fit_to_data(dataset.width, dataset.outputs, dataset.classes is not None)
    if dataset.classes is not None:
        topology.output = {"decode": "label", "labels": list(dataset.classes)}
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD) as network:
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, dataset, window=RUN_WINDOW,
                            batch=RUN_BATCH, seed=seed, shuffle=shuffle, ramp=ramp)
            orders = stream.orders(epochs)
            try:
                p = stream.run(epochs)
            finally:
                stream.close()
    if p.lost or p.answered < sum(map(len, orders)):
        print(f"  NeuroX: {p.lost} samples lost, {p.answered} answered", flush=True)
    if dataset.classes is None:
        return Score(p.rmse, p.rolling_rmse, p.samples_per_s), orders
    return Score(p.accuracy, p.rolling_accuracy, p.samples_per_s), orders


def measure(name: str, dataset: Dataset, epochs: int, seed: int, shuffle: bool = True, ramp: int = DEFAULT_RAMP) -> dict:
    """NeuroX and every reference on one dataset; the figures of one entry of the JSON."""
    print(f"{name}: {len(dataset.targets):,} x {dataset.width}, {dataset.task}", flush=True)
    neurox, orders = neurox_score(dataset, epochs, seed, shuffle, ramp)
    topology = load_topology()
    hidden = [sum(topology.width_of(n) for n in layer.neurons) for layer in topology.layers[:-1]]
    lr = float(topology.defaults["learning_rate"])
    classes = len(dataset.classes) if dataset.classes is not None else None
    scores = {"neurox": neurox,
              "in_process": in_process(dataset.features, dataset.targets, classes, hidden, lr, orders, seed,
                                       scale_config(topology.input)),
              "sklearn_mlp": sklearn_mlp(dataset.features, dataset.targets, classes, hidden, orders, seed),
              "river_logistic": river_model(dataset.features, dataset.targets, classes, orders, "logistic"),
              "river_tree": river_model(dataset.features, dataset.targets, classes, orders, "tree")}
    metric = "accuracy" if classes is not None else "rmse"
    entry = {"task": dataset.task, "samples": len(dataset.targets), "features": dataset.width, "epochs": len(orders)}
    for method, score in scores.items():
        entry[method] = {metric: round(score.value, 4), f"last_1000_{metric}": round(score.last_1000, 4),
                         "samples_per_s": round(score.samples_per_s)}
        print(f"  {method:15} {metric} {score.value:.4f}  last 1000: {score.last_1000:.4f}  "
              f"{score.samples_per_s:,.0f} samples/s", flush=True)
    if classes is not None:
        best = max(REFERENCES, key=lambda m: scores[m].value)
        entry.update(best_reference=best, margin=round(neurox.value - scores[best].value, 4),
                     last_1000_margin_vs_river_logistic=round(neurox.last_1000 - scores["river_logistic"].last_1000, 4))
    else:
        entry["rmse_ratio"] = round(neurox.value / scores["in_process"].value, 4)
    entry["speed_ratio_vs_in_process"] = round(neurox.samples_per_s / scores["in_process"].samples_per_s, 4)
    return entry


def run(args: argparse.Namespace) -> dict:
    names = chosen(args.sets, SETS, "sets")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            path = os.path.join(folder, f"{name}.csv")
            write_csv(path, *sklearn_set(name))
            results[name] = measure(name, load_dataset(path, "target"), args.epochs, args.seed, ramp=args.ramp)
        drift = {}
        if args.drift:
            for name in ("sea", "agrawal", "hyperplane"):
                path = os.path.join(folder, f"{name}.csv")
                write_csv(path, *drift_stream(name, args.seed + 1))
                drift[name] = measure(name, load_dataset(path, "target", "classification"), 1, args.seed,
                                      shuffle=False, ramp=args.ramp)
    margins = [r["margin"] for r in results.values() if "margin" in r]
    summary = {"datasets": results, "epochs": args.epochs, "window": RUN_WINDOW, "ramp": args.ramp, "knee": DEFAULT_KNEE,
               "batch": RUN_BATCH,
               "min_accuracy_margin": round(min(margins), 4) if margins else None,
               "rmse_ratio": results["diabetes"]["rmse_ratio"] if "diabetes" in results else None}
    if args.drift:
        summary["drift"] = drift
        summary["drift_min_margin"] = round(min(r["last_1000_margin_vs_river_logistic"] for r in drift.values()), 4)
    return summary
