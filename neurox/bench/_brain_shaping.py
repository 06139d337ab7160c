"""Self-reshaping measured: a 1-1-1-1-1 network that reshapes itself, beside the fixed diamond.

Both learn the digits from the same batched stream for the same time, in real neuron processes; the
result is the accuracy each reaches (inference over the whole set) and the shape the self-reshaping
one ends with.
"""
from __future__ import annotations

import tempfile
import time

import zmq

from ..ext import PRELOAD, Stream, digits, network_children
from ..neuron import Network, Topology, load_topology, parse_topology
from ..runtime import ControlClient
from ..supervisor_tree import control_endpoint
from ._chaos import evaluate

SHAPING = {"interval_s": 2.0, "plateau_rounds": 2, "plateau_tolerance": 0.05, "saturation": 0.1, "max_neurons": 4}


def line_topology() -> Topology:
    """The diamond's layers and settings, one neuron each, with self-reshaping on."""
    diamond = load_topology().to_toml_dict()
    layers = [{**layer, "neurons": 1} for layer in diamond["layer"]]
    return parse_topology({**diamond, "name": "line", "layer": layers, "self_reshaping": SHAPING})


def learn_for(topology: Topology, seconds: float) -> tuple[float, list[int], list[dict]]:
    """Accuracy after ``seconds`` of learning, the final shape, and the self-reshaper's changes."""
    data = digits()
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD) as network:
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=2, batch=8)
            deadline = time.monotonic() + seconds
            try:
                stream.run(10 ** 6, should_stop=lambda: time.monotonic() > deadline)
            finally:
                stream.close()
            accuracy = evaluate(network, data)
            client = ControlClient(zmq.Context.instance(), network.reshaper)
            try:
                shape = [len(layer["neurons"]) for layer in client.call("topology")["layers"]]
            finally:
                client.close()
            changes = []
            if topology.self_reshaping is not None:
                shaper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/self_reshaper"))
                try:
                    changes = shaper.call("status")["changes"]
                finally:
                    shaper.close()
    return accuracy, shape, changes


def measure_self_reshaping(seconds: float = 60.0) -> dict:
    accuracy, shape, changes = learn_for(line_topology(), seconds)
    diamond_accuracy, diamond_shape, _ = learn_for(load_topology(), seconds)
    done = [c for c in changes if c["ok"]]
    return {"self_reshaping_accuracy": round(accuracy, 4), "self_reshaping_shape": shape,
            "fixed_diamond_accuracy": round(diamond_accuracy, 4), "fixed_diamond_shape": diamond_shape,
            "self_reshaping_changes": {op: sum(1 for c in done if c["op"] == op)
                                       for op in ("add_neuron", "remove_neuron", "add_link", "remove_link")},
            "learning_s": seconds}
