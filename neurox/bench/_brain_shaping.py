"""Self-reshaping measured: networks that reshape themselves from a wrong start, beside the fixed diamond.

Three starts -- 1-1-1-1-1 of 16 units a neuron, a too-small 1-1-1-1-1 of 4 units, a too-large
2-4-6-4-1 (twice the diamond's inner layers) -- and the fixed diamond each learn the digits from the same
batched stream, the fixed diamond for a set time and each start from as many samples as it was sent
then (the same number of samples, however loaded the machine), in real neuron processes; the result is
the accuracy each reaches (inference over the whole set), its units, and the shape over time. And a
task too large for the diamond (``measure_growth``): more random patterns with random labels than its
weights hold, the fixed diamond beside the diamond reshaping itself in rounds counted in samples,
after the same number of samples.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np
import zmq

from ..ext import PRELOAD, Dataset, Stream, digits, network_children
from ..neuron import Network, Topology, load_topology, parse_topology
from ..runtime import ControlClient
from ..supervisor_tree import control_endpoint
from ._chaos import evaluate

SHAPING = {"interval_s": 2.0, "plateau_rounds": 2, "plateau_tolerance": 0.05, "saturation": 0.1, "max_neurons": 4}


LARGE = (2, 4, 6, 4, 1)
HARD_ROWS = 3000
"""Random patterns of the hard task: 3,000 answers of 3.3 bits, about 2 bits for each of the diamond's
4,928 weights -- it plateaus near 0.66 (0.631 at 150,000 samples, 0.664 at 300,000), where a 1-4-6-4-1
network reaches 1.0 at 300,000."""
HARD_SAMPLES = 300_000
"""Samples each network learns the hard task from (100 passes over it)."""
GROWTH = {**SHAPING, "max_neurons": 8, "interval_samples": 5000}
"""The growing diamond's ``[self_reshaping]``: a round every 5,000 samples learnt (60 in the budget),
whatever the machine's speed."""


def line_topology(units: int | None = None, shaping: dict | None = None) -> Topology:
    """The diamond's layers and settings, one neuron each (inner ones of ``units`` units if given), with
    self-reshaping on (``SHAPING``, updated by ``shaping``)."""
    diamond = load_topology().to_toml_dict()
    layers = [{**layer, "neurons": 1, **({"units": units} if units and "units" not in layer else {})}
              for layer in diamond["layer"]]
    return parse_topology({**diamond, "name": "line", "layer": layers, "self_reshaping": {**SHAPING, **(shaping or {})}})


def large_topology() -> Topology:
    """The diamond with twice the neurons in each inner layer, with self-reshaping on."""
    diamond = load_topology().to_toml_dict()
    layers = [{**layer, "neurons": n} for layer, n in zip(diamond["layer"], LARGE)]
    return parse_topology({**diamond, "name": "large", "layer": layers, "self_reshaping": SHAPING})


def units_of(topology: Topology) -> int:
    """Units in all: each layer's neurons times its width."""
    return sum(n * w for n, w in zip(shape_of(topology), widths_of(topology)))


def widths_of(topology: Topology) -> list[int]:
    """Units per neuron of each layer."""
    return [int({**topology.defaults, **layer.settings}["units"]) for layer in topology.layers]


def learn_for(topology: Topology, seconds: float, samples: int | None = None,
              data: Dataset | None = None) -> tuple[float, Topology, list[dict], int]:
    """Accuracy on ``data`` (the digits by default) after ``seconds`` of learning it (or once ``samples``
    have been sent, if sooner), the final topology, the self-reshaper's changes (each with the seconds
    since the start, ``at_s``) and the samples sent."""
    data = data or digits()
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD) as network:
            stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=2, batch=8)
            started = time.time()
            deadline = time.monotonic() + seconds
            budget = samples or 10 ** 9
            try:
                stream.run(10 ** 6, should_stop=lambda: time.monotonic() > deadline or stream.feed.sent >= budget)
            finally:
                stream.close()
            sent = stream.feed.sent
            accuracy = evaluate(network, data)
            client = ControlClient(zmq.Context.instance(), network.reshaper)
            try:
                final = Topology.from_dict(client.call("topology"), validate=False)
            finally:
                client.close()
            changes = []
            if topology.self_reshaping is not None:
                shaper = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/self_reshaper"))
                try:
                    changes = shaper.call("status")["changes"]
                    for change in changes:
                        change["at_s"] = round(change["t"] - started, 1)
                finally:
                    shaper.close()
    return accuracy, final, changes, sent


def shape_of(topology: Topology) -> list[int]:
    return [len(layer.neurons) for layer in topology.layers]


def measure_self_reshaping(seconds: float = 60.0) -> dict:
    """The fixed diamond learns for ``seconds``; each start then learns from as many samples as it did."""
    diamond = load_topology()
    diamond_accuracy, _, _, samples = learn_for(diamond, seconds)
    result = {"fixed_diamond_accuracy": round(diamond_accuracy, 4), "fixed_diamond_shape": shape_of(diamond),
              "fixed_diamond_units": units_of(diamond), "learning_s": seconds, "samples": samples}
    for name, topology in (("", line_topology()), ("_small_start", line_topology(units=4)),
                           ("_large_start", large_topology())):
        accuracy, final, changes, _ = learn_for(topology, 10 * seconds, samples)
        done = [c for c in changes if c["ok"]]
        result.update({
            f"self_reshaping{name}_accuracy": round(accuracy, 4), f"self_reshaping{name}_shape": shape_of(final),
            f"self_reshaping{name}_widths": widths_of(final), f"self_reshaping{name}_start": shape_of(topology),
            f"self_reshaping{name}_start_widths": widths_of(topology),
            f"self_reshaping{name}_layers": [layer.name for layer in topology.layers],
            f"self_reshaping{name}_units": units_of(final), f"self_reshaping{name}_start_units": units_of(topology),
            f"self_reshaping{name}_changes": [{k: c.get(k) for k in ("op", "target", "reason", "at_s")} for c in done],
            f"self_reshaping{name}_shape_over_time": shapes_over_time(
                shape_of(topology), widths_of(topology), [layer.name for layer in topology.layers], changes)})
    result["self_reshaping_large_start_units_ok"] = (result["self_reshaping_large_start_units"]
                                                     <= result["self_reshaping_large_start_start_units"])
    return result


def random_patterns(rows: int = HARD_ROWS, seed: int = 0) -> Dataset:
    """Gaussian patterns of the digits' width with a label drawn at random for each (the capacity task:
    nothing to generalise, every answer learnt by heart): with more rows than a network's weights hold,
    its accuracy is bounded by its size, not by the samples it learns from."""
    rng = np.random.default_rng(seed)
    classes = digits().classes
    return Dataset(rng.normal(size=(rows, 64)).astype(np.float32), rng.integers(0, len(classes), rows), classes)


def shapes_over_time(start: list[int], widths: list[int], layers: list[str], changes: list[dict]) -> list[dict]:
    """The network after each change of its shape that was made (neurons added or removed, a layer
    widened), from ``start`` (neurons per layer, ``widths`` units each): the samples learnt then, the
    seconds since the start, the neurons per layer and the units in all."""
    neurons, units = dict(zip(layers, start)), dict(zip(layers, widths))

    def step(change: dict) -> dict:
        return {"samples": change.get("samples"), "at_s": change.get("at_s"), "shape": list(neurons.values()),
                "units": sum(neurons[layer] * units[layer] for layer in layers)}

    seen = [step({"samples": 0, "at_s": 0.0})]
    for change in changes:
        if not change["ok"] or change["op"] not in ("add_neuron", "remove_neuron", "widen_layer"):
            continue
        layer = change["target"][0].rsplit(".n", 1)[0]  # a layer's name, or a neuron's id (LAYER.nK)
        if change["op"] == "widen_layer":
            units[layer] = int(change["target"][1])
        else:
            neurons[layer] += 1 if change["op"] == "add_neuron" else -1
        seen.append(step(change))
    return seen


def measure_growth(samples: int = HARD_SAMPLES, rows: int = HARD_ROWS) -> dict:
    """The fixed diamond and the same diamond reshaping itself (``GROWTH``: up to 8 neurons a layer, a round
    every 5,000 samples) on a task too large for the diamond (``random_patterns``), each after the
    same ``samples``."""
    data = random_patterns(rows)
    diamond = load_topology()
    growing = parse_topology({**diamond.to_toml_dict(), "name": "growing", "self_reshaping": GROWTH})
    started = time.perf_counter()
    fixed, _, _, _ = learn_for(diamond, 3600.0, samples, data)
    fixed_s, started = time.perf_counter() - started, time.perf_counter()
    grown, final, changes, _ = learn_for(growing, 3600.0, samples, data)
    return {"fixed_diamond_hard_accuracy": round(fixed, 4), "self_reshaping_hard_accuracy": round(grown, 4),
            "hard_samples": samples, "hard_rows": rows, "interval_samples": GROWTH["interval_samples"],
            "fixed_diamond_hard_units": units_of(diamond),
            "self_reshaping_hard_shape": shape_of(final), "self_reshaping_hard_units": units_of(final),
            "self_reshaping_hard_shape_over_time": shapes_over_time(shape_of(diamond), widths_of(diamond),
                                                                    [layer.name for layer in diamond.layers], changes),
            "self_reshaping_hard_changes": [{k: c.get(k) for k in ("op", "target", "reason", "samples", "at_s")}
                                            for c in changes if c["ok"]],
            "fixed_diamond_hard_s": round(fixed_s, 1), "self_reshaping_hard_s": round(time.perf_counter() - started, 1)}

