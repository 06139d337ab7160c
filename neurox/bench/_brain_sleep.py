"""Sleep measured: replay against forgetting, and answers while neurons rotate through maintenance.

- :func:`measure_sleep`: the diamond learns task A (digits 0-4), then task B (digits 5-9); with sleep a
  maintenance phase follows in which it dreams (replays what its hippocampus kept of both tasks), without
  sleep it idles as long. Then its accuracy on A (and B) is measured, by inference over each task's set.
- :func:`measure_maintenance`: the share of MessengerIn requests answered during a whole maintenance cycle.
"""
from __future__ import annotations

import tempfile
import time

import zmq

from ..ext import PRELOAD, Dataset, Stream, digits, network_children
from ..neuron import Network, Topology, load_topology
from ..runtime import ControlClient
from ..supervisor_tree import control_endpoint
from ._asker import SteadyAsker
from ._chaos import evaluate


def sleepy_topology(maintenance_s: float) -> Topology:
    topology = load_topology()
    topology.maintenance = {"awake_s": 3600.0, "maintenance_s": maintenance_s, "capacity": 2000, "replay_per_s": 400.0}
    return topology


def task(data: Dataset, classes: range) -> Dataset:
    keep = [i for i, t in enumerate(data.targets) if t in classes]
    return Dataset(data.features[keep], data.targets[keep], data.classes)


def _learn(network: Network, data: Dataset, epochs: int) -> None:
    stream = Stream(zmq.Context.instance(), network.run_dir, network.topology, data, window=2, batch=8)
    try:
        stream.run(epochs)
    finally:
        stream.close()


def _sleeper(network: Network) -> ControlClient:
    return ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, "root/maintenance"), 10.0)


def _sleep_through_a_cycle(network: Network, timeout_s: float) -> dict:
    sleeper = _sleeper(network)
    try:
        sleeper.call("sleep_now")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.2)
            status = sleeper.call("status")
            if status["cycles"] >= 1:
                return status
        raise RuntimeError("the maintenance cycle did not end in time")
    finally:
        sleeper.close()


def retained(sleep: bool, maintenance_s: float, epochs: int) -> tuple[float, float, dict]:
    """Accuracy on A and on B after learning A then B, with or without a maintenance phase after."""
    data = digits()
    a, b = task(data, range(0, 5)), task(data, range(5, 10))
    topology = sleepy_topology(maintenance_s)
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD) as network:
            _learn(network, a, epochs)
            _learn(network, b, epochs)
            status = _sleep_through_a_cycle(network, maintenance_s * 3 + 30) if sleep else {}
            if not sleep:
                time.sleep(maintenance_s)
            return evaluate(network, a), evaluate(network, b), status


def measure_sleep(maintenance_s: float = 20.0, epochs: int = 3) -> dict:
    with_a, with_b, status = retained(True, maintenance_s, epochs)
    without_a, without_b, _ = retained(False, maintenance_s, epochs)
    return {"retained_a_with_sleep": round(with_a, 4), "retained_a_without_sleep": round(without_a, 4),
            "b_with_sleep": round(with_b, 4), "b_without_sleep": round(without_b, 4),
            "dreamt": status.get("dreamt"), "maintenance_s": maintenance_s, "epochs_per_task": epochs}


def measure_maintenance(maintenance_s: float = 15.0) -> dict:
    """Requests answered while the layers take turns in maintenance, one client asking steadily."""
    data = digits()
    topology = sleepy_topology(maintenance_s)
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD) as network:
            _learn(network, data, 1)
            with SteadyAsker(network.messenger_in, data.features) as asker:
                status = _sleep_through_a_cycle(network, maintenance_s * 3 + 30)
    outcomes = asker.outcomes
    asked = outcomes["ok"] + outcomes["errors"]
    return {"maintenance_answered_ratio": round(outcomes["ok"] / asked, 4) if asked else None,
            "maintenance_requests": asked, "maintenance_turns": status["turns"], "dreamt_during": status["dreamt"]}
