"""Where the data plane of a network lives, derived from its run directory alone.

Every neuron's inbox, MessengerOut's inbox (after the last layer) and MessengerIn's client socket
are ipc endpoints in the network's private run directory, so any process of the network (or a
probe on the same host) can reach any other without a registry.
"""
from __future__ import annotations

import os

from ..runtime import ipc_endpoint
from ..supervisor_tree import control_endpoint
from ._topology import OUTPUT, Topology

TOPOLOGY_FILE = "topology.json"


def inbox_name(node: str) -> str:
    return "messenger_out.in" if node == OUTPUT else f"{node}.in"


def inbox_endpoint(run_dir: str, node: str) -> str:
    """The PULL inbox of a neuron, or of MessengerOut for the pseudo-node ``output``."""
    return ipc_endpoint(run_dir, inbox_name(node))


def neuron_path(topology: Topology, neuron_id: str) -> str:
    """A neuron's path in the supervision tree: its layer's supervisor's (``Topology.supervisor_path``)
    / itself -- ``root/REGION/LAYER/ID`` in a region, ``root/LAYER/ID`` in a plain layer."""
    return f"{topology.supervisor_path(topology.layer_of(neuron_id).name)}/{neuron_id}"


def neuron_control(run_dir: str, topology: Topology, neuron_id: str) -> str:
    """A neuron's control endpoint, from the run directory and the topology it runs in."""
    return control_endpoint(run_dir, neuron_path(topology, neuron_id))


def experiences_endpoint(run_dir: str) -> str:
    """Where origins push what they send to learn from, for the hippocampus to keep (PUSH/PULL)."""
    return ipc_endpoint(run_dir, "hippocampus.in")


def messenger_in_endpoint(run_dir: str) -> str:
    """Where clients send MessengerIn requests (ROUTER; clients use DEALER or REQ)."""
    return ipc_endpoint(run_dir, "messenger.in")


def topology_path(data_dir: str) -> str:
    return os.path.join(data_dir, TOPOLOGY_FILE)
