"""The whole network in one process, packets in flight included: the reference for pipelined learning.

Every neuron of a topology is a :class:`Node` here, with its own weights, its joins and its staleness
rule (the very rules the neurons use, ``neurox.neuron._staleness``), computing forward and backward
*bundles*. Two ways to drive it:

* :meth:`ReferencePipeline.replay` runs the journals of real neurons (``journal`` on their control
  socket: which packets each one computed or learnt from, bundle by bundle, in order). The result
  is what the real network must have computed, to rounding: the tests check the real weights with it.
* :meth:`ReferencePipeline.stream` makes its own schedule: a clock where every frame takes one tick
  (or two, with probability ``jitter``), an origin keeping ``window`` packets in flight, and each
  neuron computing everything that arrived in a tick as one bundle, forward first -- the shape of the
  real pipeline, where whole windows travel as a few bundles. What a rule does at a window, quickly.

Only what the diamond needs is modelled: backprop, softmax cross-entropy or squared error at the end,
no gain, no context, no missed inputs (a replay with a missing part raises).
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from ..neuron import (DEFAULT_STALENESS as DEFAULT_RULE, DEFAULT_STALENESS_GROUP as DEFAULT_GROUP, INPUT, OUTPUT,
                      Topology, init_of, initial_weights, make_staleness_rule as make_rule)

FORWARD, BACKWARD = "F", "B"


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def slope(y: np.ndarray, activation: str) -> np.ndarray:
    """d act / d z from the output."""
    return {"tanh": lambda: 1 - y * y, "sigmoid": lambda: y * (1 - y), "relu": lambda: (y > 0).astype(np.float32)
            }.get(activation, lambda: np.ones_like(y))()


class Node:
    """One neuron: weights, what its forward passes kept, and the parts of packets not yet complete."""

    def __init__(self, nid: str, inputs: list[str], outputs: list[str], widths: dict[str, int], weights: np.ndarray,
                 bias: np.ndarray, activation: str, learning_rate: float, rule: str, group: int):
        self.id, self.inputs, self.outputs, self.widths = nid, inputs, outputs, widths
        self.weights, self.bias = weights.astype(np.float32).copy(), bias.astype(np.float32).copy()
        self.activation, self.learning_rate = activation, learning_rate
        self.rule = make_rule(rule, group)
        self.kept: dict[int, tuple] = {}
        self.parts: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
        self.grads: dict[int, dict[str, np.ndarray]] = defaultdict(dict)

    def forward_ready(self, packet: int) -> bool:
        return len(self.parts.get(packet, ())) == len(self.inputs)

    def backward_ready(self, packet: int) -> bool:
        return len(self.grads.get(packet, ())) == len(self.outputs)

    def forward(self, packets: list[int], targets: dict) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Outputs per packet; at the end node also the input gradients of those learnt from (else None)."""
        xs = []
        for packet in packets:
            parts = self.parts.pop(packet)
            xs.append(np.concatenate([parts[src] for src in self.inputs], axis=1))
        x = np.concatenate(xs)
        y = activate(x @ self.weights + self.bias, self.activation).astype(np.float32)
        bounds = np.cumsum([0, *(len(r) for r in xs)])
        ys = [y[bounds[i]:bounds[i + 1]] for i in range(len(packets))]
        stamp = self.rule.stamp(self.weights, self.bias)
        learnt = [i for i, p in enumerate(packets) if targets.get(p) is not None]
        if OUTPUT not in self.outputs:
            for i in learnt:
                self.kept[packets[i]] = (xs[i], ys[i], stamp)
            return ys, None
        if not learnt:
            return ys, []
        dz = [self._output_gradient(ys[i], targets[packets[i]]) for i in learnt]
        return ys, self._learn([packets[i] for i in learnt], [xs[i] for i in learnt], dz, [stamp] * len(learnt))

    def _output_gradient(self, y: np.ndarray, targets) -> np.ndarray:
        if self.activation == "softmax":
            dz = y.copy()
            dz[np.arange(len(y)), np.asarray(targets, dtype=np.int64)] -= 1
        else:
            dz = (y - np.asarray(targets, dtype=np.float32).reshape(y.shape)) * slope(y, self.activation)
        return (dz / len(y)).astype(np.float32)

    def backward(self, packets: list[int]) -> list[tuple[int, np.ndarray]]:
        xs, dz, stamps = [], [], []
        for packet in packets:
            grads = self.grads.pop(packet)
            x, y, stamp = self.kept.pop(packet)
            xs.append(x)
            dz.append(sum(grads[dst] for dst in self.outputs) * slope(y, self.activation))
            stamps.append(stamp)
        return self._learn(packets, xs, dz, stamps)

    def _learn(self, packets: list[int], xs: list, dz: list, stamps: list) -> list[tuple[int, np.ndarray]]:
        rows = [len(x) for x in xs]
        dx, self.weights, self.bias = self.rule.learn(np.concatenate(xs), np.concatenate(dz).astype(np.float32),
                                                      stamps, rows, self.weights, self.bias, self.learning_rate)
        bounds = np.cumsum([0, *rows])
        return [(p, dx[bounds[i]:bounds[i + 1]]) for i, p in enumerate(packets)]

    def input_blocks(self, dx: np.ndarray):
        """(upstream neuron, its block of dx) for every input that is a neuron."""
        at = 0
        for src in self.inputs:
            if src != INPUT:
                yield src, dx[:, at:at + self.widths[src]]
            at += self.widths[src]


@dataclass(frozen=True)
class PipelineResult:
    accuracy: float
    last_1000_accuracy: float
    mean_bundle: dict[str, float]
    """Mean packets per forward bundle, per layer."""


class ReferencePipeline:
    """A topology's neurons in one process, from given weights (``params``: neuron -> (weights, bias))."""

    def __init__(self, topology: Topology, params: dict, rule: str = DEFAULT_RULE, group: int = DEFAULT_GROUP):
        self.topology = topology
        self.nodes = {}
        for n in topology.neurons():
            settings = topology.settings_of(n)
            inputs = topology.inputs_of(n)
            self.nodes[n] = Node(n, inputs, topology.outputs_of(n), {s: topology.width_of(s) for s in inputs},
                                 *params[n], settings["activation"], float(settings["learning_rate"]), rule, group)
        self.first = topology.layers[0].neurons
        self.bundles: dict[str, list[int]] = defaultdict(list)

    def params(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {n: (node.weights, node.bias) for n, node in self.nodes.items()}

    def feed(self, packet: int, rows: np.ndarray) -> None:
        for n in self.first:
            self.nodes[n].parts[packet][INPUT] = np.asarray(rows, dtype=np.float32)

    def run(self, nid: str, kind: str, packets: list[int], targets: dict) -> list[tuple[str, str, int, np.ndarray]]:
        """One bundle of one neuron; the frames it sends: (kind, destination, packet, rows)."""
        node, sent = self.nodes[nid], []
        if kind == FORWARD:
            self.bundles[self.topology.layer_of(nid).name].append(len(packets))
            ys, back = node.forward(packets, targets)
            for dst in node.outputs:
                sent.extend((FORWARD, dst, p, y) for p, y in zip(packets, ys))
        else:
            back = node.backward(packets)
        for packet, dx in back or ():
            sent.extend((BACKWARD, src, packet, block) for src, block in node.input_blocks(dx))
        return sent

    def deliver(self, frame: tuple, sender: str) -> None:
        kind, dst, packet, rows = frame
        if dst != OUTPUT:
            (self.nodes[dst].parts if kind == FORWARD else self.nodes[dst].grads)[packet][sender] = rows

    def replay(self, journals: dict[str, list], samples: dict[int, tuple]) -> dict[int, np.ndarray]:
        """Run every neuron's journal (``[[kind, packets], ...]``) in its order, each bundle once its
        inputs exist; ``samples``: packet -> (rows, targets or None). Returns the answers (end outputs)."""
        for packet, (rows, _) in samples.items():
            self.feed(packet, rows)
        targets = {p: t for p, (_, t) in samples.items()}
        at = dict.fromkeys(journals, 0)
        answers: dict[int, np.ndarray] = {}
        progress = True
        while progress:
            progress = False
            for nid, journal in journals.items():
                node = self.nodes[nid]
                while at[nid] < len(journal):
                    kind, packets = journal[at[nid]]
                    ready = node.forward_ready if kind == FORWARD else node.backward_ready
                    if not all(ready(p) for p in packets):
                        break
                    at[nid] += 1
                    progress = True
                    for frame in self.run(nid, kind, list(packets), targets):
                        self.deliver(frame, nid)
                        if frame[1] == OUTPUT:
                            answers[frame[2]] = frame[3]
        stuck = {n: journals[n][at[n]] for n in journals if at[n] < len(journals[n])}
        if stuck:
            raise ValueError(f"the journals cannot be replayed: waiting for inputs that never come at {stuck}")
        return answers

    def stream(self, features: np.ndarray, targets: np.ndarray, window: int, epochs: int, seed: int = 0,
               batch: int = 1, jitter: float = 0.25) -> PipelineResult:
        """Prequential accuracy of learning the dataset with ``window`` packets in flight (see module doc)."""
        rng, clock = np.random.default_rng(seed), np.random.default_rng(seed + 1)
        order = [rows for _ in range(epochs) for rows in _batches(rng.permutation(len(targets)), batch)]
        due: dict[int, list] = defaultdict(list)
        waiting: dict[str, deque] = {n: deque() for n in self.nodes}
        waiting_back: dict[str, deque] = {n: deque() for n in self.nodes}
        truth, hits, next_packet, in_flight, tick = {}, [], 0, 0, 0
        while next_packet < len(order) or in_flight:
            while in_flight < window and next_packet < len(order):
                rows = order[next_packet]
                truth[next_packet] = targets[rows]
                for n in self.first:
                    due[tick + 1].append((INPUT, (FORWARD, n, next_packet, features[rows])))
                next_packet += 1
                in_flight += 1
            tick += 1
            for sender, frame in due.pop(tick, ()):
                kind, nid, packet, rows = frame
                if nid == OUTPUT:
                    hits.extend(rows.argmax(axis=1) == truth.pop(packet))
                    in_flight -= 1
                    continue
                self.deliver(frame, sender)
                node = self.nodes[nid]
                if kind == FORWARD and node.forward_ready(packet):
                    waiting[nid].append(packet)
                elif kind == BACKWARD and node.backward_ready(packet):
                    waiting_back[nid].append(packet)
            for nid in self.nodes:
                for kind, queue in ((FORWARD, waiting[nid]), (BACKWARD, waiting_back[nid])):
                    if queue:
                        packets = list(queue)
                        queue.clear()
                        later = tick + 1 + int(clock.random() < jitter)
                        due[later].extend((nid, frame) for frame in self.run(nid, kind, packets, truth))
        last = hits[-1000:]
        return PipelineResult(float(np.mean(hits)), float(np.mean(last)),
                              {layer: float(np.mean(sizes)) for layer, sizes in self.bundles.items()})


def _batches(order: np.ndarray, batch: int) -> list[np.ndarray]:
    return [order[at:at + batch] for at in range(0, len(order), batch)]


def fresh_params(topology: Topology) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The weights every neuron of ``topology`` starts with on a first start (seeded by the topology's
    seed and the neuron's id, as the neuron process does)."""
    params = {}
    for n in topology.neurons():
        fan_in = sum(topology.width_of(s) for s in topology.inputs_of(n))
        params[n] = initial_weights(fan_in, topology.width_of(n), np.random.default_rng([topology.seed, *n.encode()]),
                                    init_of(topology.settings_of(n)))
    return params
