"""the maintenance pool's copies on a thousand neurons: every neuron's weights read and given back (the pool's
give-back, with nothing learnt), as batches in flight together (``brain._pool.batch_call``, what the pool does)
beside one control call after another (what it did before, the baseline), in the same run on the same network"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import zmq

from ..brain import batch_call
from ..ext import PRELOAD
from ..neuron import Network, array_from_wire, array_to_wire, neuron_control
from ..runtime import ControlError, call
from ._scale import START_S_PER_NEURON, sparse_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--neurons", type=int, default=1000, help="total neurons (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=10, help="inner layers (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="copies and give-backs of each kind (default: %(default)s)")


def zeros_of(params: dict) -> dict:
    """A give-back that adds nothing (the shapes of ``get_params``' weights and bias)."""
    return {"weights": array_to_wire(np.zeros_like(array_from_wire(params["weights"]))),
            "bias": array_to_wire(np.zeros_like(array_from_wire(params["bias"])))}


def one_by_one(ctx: zmq.Context, endpoints: dict[str, str]) -> int:
    """The baseline: read every neuron's weights, then give each its (empty) learning back, one call at a time."""
    copies = {name: call(ctx, endpoint, "get_params", 15.0) for name, endpoint in endpoints.items()}
    for name, endpoint in endpoints.items():
        call(ctx, endpoint, "set_params", 15.0, add=True, **zeros_of(copies[name]))
    return len(copies)


def batched(ctx: zmq.Context, endpoints: dict[str, str]) -> int:
    """The same through the pool's batches; the calls that failed are an error of the benchmark."""
    copies = batch_call(ctx, endpoints, "get_params")
    added = batch_call(ctx, endpoints, "set_params", add=True, each={n: zeros_of(p) for n, p in copies.items()})
    failed = {n: a for n, a in {**copies, **added}.items() if isinstance(a, ControlError)}
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed, e.g. {next(iter(failed.items()))}")
    return len(copies)


def run(args: argparse.Namespace) -> dict:
    topology = sparse_topology(args.neurons, args.layers, 3, 4)
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as data_dir:
        network = Network(topology, data_dir, preload=PRELOAD)
        try:
            network.tree.start(timeout=max(60.0, args.neurons * START_S_PER_NEURON))
            endpoints = {n: neuron_control(network.run_dir, topology, n) for n in topology.neurons()}
            times: dict[str, list[float]] = {"one_by_one": [], "batched": []}
            for _ in range(args.rounds):  # alternated, so a change of the machine's load falls on both
                for name, how in (("one_by_one", one_by_one), ("batched", batched)):
                    started = time.perf_counter()
                    done = how(ctx, endpoints)
                    times[name].append(time.perf_counter() - started)
                    print(f"{name}: {done} neurons copied and given back in {times[name][-1]:.2f} s", flush=True)
        finally:
            network.stop()
            ctx.destroy(linger=0)
    sequential, parallel = min(times["one_by_one"]), min(times["batched"])
    return {"neurons": len(endpoints), "batched_s": round(parallel, 3), "baseline_one_by_one_s": round(sequential, 3),
            "speedup": round(sequential / parallel, 2), "load_average": round(os.getloadavg()[0], 1)}
