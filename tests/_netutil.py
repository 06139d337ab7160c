"""Helpers for tests that run a real network: start/stop, feed, wait for events, read params."""
from __future__ import annotations

import contextlib
import time

import numpy as np
import zmq

from _busutil import join_bus
from neurox.ext import PRELOAD, Dataset, Stream, messenger_children
from neurox.neuron import Network, Topology, neuron_control
from neurox.runtime import ControlClient, unpack_map


@contextlib.contextmanager
def running_network(topology: Topology, data_dir, resume: bool = False, timeout_ms: int = 5000):
    network = Network(topology, str(data_dir), extensions=messenger_children(str(data_dir), timeout_ms=timeout_ms),
                      resume=resume, preload=PRELOAD)
    network.start()
    try:
        yield network
    finally:
        network.stop()


def neuron_call(network: Network, neuron_id: str, op: str, timeout: float = 5.0, **args):
    client = ControlClient(zmq.Context.instance(), neuron_control(network.run_dir, network.topology, neuron_id), timeout)
    try:
        return client.call(op, **args)
    finally:
        client.close()


def params(network: Network, neuron_id: str) -> tuple[np.ndarray, np.ndarray]:
    p = neuron_call(network, neuron_id, "get_params")
    w = np.frombuffer(p["weights"]["data"], dtype="<f4").reshape(p["weights"]["shape"])
    b = np.frombuffer(p["bias"]["data"], dtype="<f4").reshape(p["bias"]["shape"])
    return w.copy(), b.copy()


def learn(network: Network, dataset: Dataset, epochs: int = 1, window: int = 4, **kwargs):
    stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, dataset, window=window, **kwargs)
    try:
        return stream.run(epochs)
    finally:
        stream.close()


class EventWatcher:
    """A SUB on the network's event bus, to await events instead of sleeping; it sees every event
    published after it was made."""

    def __init__(self, network: Network):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(network.events)
        join_bus(self.sock, network.tree.events_sink)

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000)):
                event = unpack_map(self.sock.recv_multipart()[1])
                if predicate(event):
                    return event
        raise AssertionError("the awaited event did not come")

    def close(self) -> None:
        self.sock.close()


def settle(network: Network, timeout: float = 10.0) -> None:
    """Wait until no neuron holds a join, a gradient join or a pass kept for learning."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [n for n in network.topology.neurons()
                if any(neuron_call(network, n, "metrics")[k] for k in ("pending_joins", "pending_gradients", "kept"))]
        if not busy:
            return
        time.sleep(0.05)
    raise AssertionError(f"neurons still busy: {busy}")
