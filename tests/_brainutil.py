"""Helpers for tests of the brain parts: a network with its regions' modulators, calls to a modulator,
and waiting for a condition on a live process's answers (levels have no event of their own)."""
from __future__ import annotations

import contextlib
import time

import zmq

import numpy as np

from _extutil import network_with
from _netutil import neuron_call
from neurox.ext import PRELOAD, digits, messenger_children
from neurox.brain import modulator_children, modulator_id
from neurox.neuron import Network, Topology
from neurox.runtime import ControlClient
from neurox.supervisor_tree import control_endpoint


@contextlib.contextmanager
def running_modulated_network(topology: Topology, data_dir, resume: bool = False):
    data_dir = str(data_dir)
    network = Network(topology, data_dir, resume=resume, preload=PRELOAD,
                      extensions=messenger_children(data_dir) + modulator_children(topology, data_dir))
    network.start()
    try:
        yield network
    finally:
        network.stop()


@contextlib.contextmanager
def network_that_sleeps(topology: Topology, tmp_path, **maintenance):
    """``topology`` with a ``[maintenance]`` table -- an hour awake, a minute asleep, 400 dreams a second
    from an education of 200 digits (the dreams need no learning before), then ``maintenance`` -- started;
    stopped on the way out. Its worker is ``root/maintenance``, its twins under ``root/maintenance_pool``."""
    lesson = tmp_path / "lesson.npz"
    np.savez(lesson, X=digits().features[:200], y=digits().targets[:200])
    topology.maintenance = {"awake_s": 3600, "maintenance_s": 60, "capacity": 10, "replay_per_s": 400,
                            "education": str(lesson), **maintenance}
    with network_with(tmp_path, [], topology) as network:
        yield network


def modulator_call(network: Network, region: str, op: str, timeout: float = 5.0, **args):
    client = ControlClient(zmq.Context.instance(), control_endpoint(network.run_dir, f"root/{modulator_id(region)}"),
                           timeout)
    try:
        return client.call(op, **args)
    finally:
        client.close()


def wait_until(ask, good, timeout: float = 10.0, every_s: float = 0.02):
    """``ask()`` until ``good(answer)``; that answer (an AssertionError with the last one after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if good(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s; last answer: {answer}")
        time.sleep(every_s)


def subscribed(network: Network, region: str, neurons: list[str], timeout: float = 10.0) -> None:
    """Return once each of ``neurons`` has received a publication of its region's modulator made now.

    A neuron's SUB may connect after the modulator has published (they start together, and a SUB
    retries its connection with a back-off): until it has, it misses what is published.
    """
    deadline = time.monotonic() + timeout
    while True:
        modulator_call(network, region, "release", transmitter="gaba", amount=0.0)  # publishes now
        seq = modulator_call(network, region, "status")["publishes"]
        try:
            for neuron in neurons:
                wait_until(lambda n=neuron: neuron_call(network, n, "status")["neuromodulators"]["seq"],
                           lambda s: s >= seq, timeout=0.5)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
