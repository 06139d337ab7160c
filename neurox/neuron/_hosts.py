"""Placement over hosts as a topology states it, checked: host names, addresses and ports, a host for every
layer. Kept apart from ``_placement`` (which derives endpoints from it) so that the topology can check it
without importing the endpoints, which import the topology."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._topology import Topology

HOST_KEY = "host"
"""The layer key that places it on a host."""
DEFAULT_BASE_PORT = 7600
MAX_NEURONS_PER_LAYER_ON_TCP = 100
ADDRESS = re.compile(r"(?P<address>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>\d{1,5}))?")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A host's name is also a file name (its public key, ``allowed/NAME.key``)."""


class PlacementError(ValueError):
    """A placement that cannot be run; the message names the layer or host."""


def parse_address(text: str) -> tuple[str, int]:
    """("10.0.0.1", 7600) from "10.0.0.1" or "10.0.0.1:7600"; PlacementError otherwise."""
    match = ADDRESS.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise PlacementError(f"a host address is 'ADDRESS' or 'ADDRESS:PORT', got {text!r}")
    return match["address"], int(match["port"] or DEFAULT_BASE_PORT)


def check_placement(topology: "Topology") -> None:
    """Every layer on a known host (or none at all), addresses and ports that work."""
    placed = {l.name: l.settings[HOST_KEY] for l in topology.layers if HOST_KEY in l.settings}
    pool_host = (topology.maintenance or {}).get(HOST_KEY)
    if not topology.hosts:
        if placed or pool_host is not None:
            raise PlacementError(f"layers {sorted(placed)} or [maintenance] name a host but the topology "
                                 f"has no [hosts] table")
        return
    if pool_host is not None and pool_host not in topology.hosts:
        raise PlacementError(f"[maintenance] host must be one of the hosts {sorted(topology.hosts)}, got {pool_host!r}")
    for name, address in topology.hosts.items():
        if not HOST_NAME.fullmatch(name):
            raise PlacementError(f"a host name must match {HOST_NAME.pattern}, got {name!r}")
        _, base = parse_address(address)
        highest = base + 100 * 2 * len(topology.layers) + MAX_NEURONS_PER_LAYER_ON_TCP - 1
        if not 1024 <= base or highest > 65535:
            raise PlacementError(f"host {name!r}: ports {base}..{highest} do not fit in 1024..65535")
    for layer in topology.layers:
        host = placed.get(layer.name)
        if host not in topology.hosts:
            raise PlacementError(f"layer {layer.name!r} must name one of the hosts {sorted(topology.hosts)} "
                                 f"with 'host = ...', got {host!r}")
        if layer.next_index > MAX_NEURONS_PER_LAYER_ON_TCP:
            raise PlacementError(f"layer {layer.name!r}: at most {MAX_NEURONS_PER_LAYER_ON_TCP} neuron ids "
                                 f"per layer in a network spread over hosts")
