"""The Python API for reshaping a running network: one method, one request to its reshaper."""
from __future__ import annotations

import zmq

from ..runtime import ControlClient


class Reshaping:
    """A client of a network's reshaper (``Network.reshaper`` gives the endpoint).

    Errors arrive as ``ControlError`` with an atom in ``.error`` (``bad_topology``, ``fixed_layer``,
    ``last_neuron``, ``would_orphan``, ``already_linked``, ``not_found``, ``bad_request``).
    """

    def __init__(self, endpoint: str | None, ctx: zmq.Context | None = None, timeout: float = 60.0, client=None):
        """``client``: any object with ``ControlClient``'s ``call`` and ``close`` instead of an endpoint (a
        remote host's reshaper through its control gateway, ``GatewayClient``)."""
        self.client = client or ControlClient(ctx or zmq.Context.instance(), endpoint, timeout)

    def add_neuron(self, layer: str) -> dict:
        return self.client.call("add_neuron", layer=layer)

    def remove_neuron(self, neuron_id: str) -> dict:
        return self.client.call("remove_neuron", id=neuron_id)

    def add_link(self, src: str, dst: str) -> dict:
        return self.client.call("add_link", **{"from": src, "to": dst})

    def remove_link(self, src: str, dst: str) -> dict:
        return self.client.call("remove_link", **{"from": src, "to": dst})

    def add_layer(self, name: str, after: str, neurons: int = 1, settings: dict | None = None) -> dict:
        return self.client.call("add_layer", name=name, after=after, neurons=neurons, settings=settings or {})

    def remove_layer(self, name: str) -> dict:
        return self.client.call("remove_layer", name=name)

    def widen_layer(self, layer: str, units: int) -> dict:
        """Every neuron of ``layer`` to ``units`` units, keeping what the network computes (docs/brain.md)."""
        return self.client.call("widen_layer", layer=layer, units=units)

    def set_settings(self, settings: dict, layer: str | None = None, neuron: str | None = None) -> dict:
        target = {"neuron": neuron} if neuron else {"layer": layer}
        return self.client.call("set_settings", settings=settings, **target)

    def set_learning(self, learning: bool) -> dict:
        return self.client.call("set_learning", learning=learning)

    def topology(self) -> dict:
        return self.client.call("topology")

    def export(self) -> str:
        """The live topology as a TOML document."""
        return self.client.call("export")

    def close(self) -> None:
        self.client.close()
