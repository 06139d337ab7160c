"""Where the parts of a network run when it spans hosts, and how they reach one another.

A topology places each layer on a named host and gives each host's address::

    [hosts]
    h1 = "10.0.0.1"          # or "10.0.0.1:7600": the first of the host's ports (default 7600)
    h2 = "10.0.0.2"

    [[layer]]
    name = "L0"
    host = "h1"

The edge processes (MessengerIn/Out, the reshaper, the topology's extensions) run on the *front
host*, the one holding the end neuron, so that answers reach their origin over ipc. Each host
serves on TCP (CURVE; see :mod:`neurox.runtime._curve`) its neurons' inboxes, its root supervisor's
control socket and, on the front host, MessengerIn; it reaches the inboxes of neurons placed
elsewhere over TCP. Ports are fixed by the placement alone, so every host computes the same plan::

    root.ctl          BASE             the host's root supervisor (control requests)
    messenger.in      BASE + 1         MessengerIn (front host only)
    events.pub        BASE + 2         the host's event bus (PUB), for the Supervisor services of the others
    events.ctl        BASE + 3         the bus's control socket (its recent history)
    hippocampus.in    BASE + 4         the experiences origins send to (maintenance host only)
    LAYER.nK.in       BASE + 100 * (layer's position + 1) + K
    (neuron control)  BASE + 100 * (layers + layer's position + 1) + K

A neuron's control socket is reachable from the other hosts so that the maintenance worker, which
runs on the *maintenance host* (``[maintenance] host``, default the front host) with its pool, can
copy every neuron into the pool and give each its learning back.

Everything here is pure: the node agent turns it into the run directory's ``tcp.json``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..runtime import Route
from ..supervisor_tree import control_endpoint
from ._endpoints import experiences_endpoint, inbox_name, messenger_in_endpoint, neuron_control
from ._hosts import HOST_KEY, parse_address

if TYPE_CHECKING:
    from ._topology import Topology

ROOT_CONTROL = os.path.basename(control_endpoint("/", "root"))
EVENTS_PUB, EVENTS_CONTROL = "events.pub", "events.ctl"
"""The names of a host's event bus sockets in its run directory (``neurox.supervisor_tree.Tree``)."""
MESSENGER_IN = os.path.basename(messenger_in_endpoint("/"))
HIPPOCAMPUS_IN = os.path.basename(experiences_endpoint("/"))


def host_of(topology: "Topology", layer_name: str) -> str | None:
    return topology.layer_named(layer_name).settings.get(HOST_KEY)


def front_host(topology: "Topology") -> str | None:
    """The host of the end neuron, where the edge processes run (None: not spread over hosts)."""
    return topology.layers[-1].settings.get(HOST_KEY)


def maintenance_host(topology: "Topology") -> str | None:
    """Where the maintenance worker and its pool run: ``[maintenance] host``, else the front host."""
    return (topology.maintenance or {}).get(HOST_KEY) or front_host(topology)


def layers_on(topology: "Topology", host: str | None) -> list[str]:
    """The layers a host runs: all of them when ``host`` is None (one host, no placement)."""
    return [l.name for l in topology.layers if host is None or l.settings.get(HOST_KEY) == host]


def _endpoint(topology: "Topology", host: str, offset: int) -> str:
    address, base = parse_address(topology.hosts[host])
    return f"tcp://{address}:{base + offset}"


def _neuron_offset(topology: "Topology", neuron_id: str) -> int:
    layer = topology.layer_of(neuron_id)
    index = topology.layers.index(layer)
    return 100 * (index + 1) + int(neuron_id.rsplit(".n", 1)[1])


def _neuron_names(topology: "Topology", neuron_id: str) -> dict[str, int]:
    """A neuron's inbox and control socket names, with their port offsets."""
    control = os.path.basename(neuron_control("/", topology, neuron_id))
    inbox = _neuron_offset(topology, neuron_id)
    return {inbox_name(neuron_id): inbox, control: inbox + 100 * len(topology.layers)}


def tcp_exports(topology: "Topology", host: str) -> dict[str, str]:
    """Ipc names a host also serves on TCP, with their endpoints."""
    exports = {ROOT_CONTROL: control_tcp(topology, host)}
    exports[EVENTS_PUB], exports[EVENTS_CONTROL] = events_tcp(topology, host)
    if host == front_host(topology):
        exports[MESSENGER_IN] = _endpoint(topology, host, 1)
    if topology.maintenance is not None and host == maintenance_host(topology):
        exports[HIPPOCAMPUS_IN] = _endpoint(topology, host, 4)
    for layer in topology.layers:
        if layer.settings.get(HOST_KEY) == host:
            for neuron_id in layer.neurons:
                for name, offset in _neuron_names(topology, neuron_id).items():
                    exports[name] = _endpoint(topology, host, offset)
    return exports


def tcp_routes(topology: "Topology", host: str) -> dict[str, Route]:
    """The inboxes and control sockets of the neurons on other hosts, the maintenance host's
    hippocampus, and where they are."""
    routes = {}
    pool_host = maintenance_host(topology)
    if topology.maintenance is not None and host != pool_host:
        routes[HIPPOCAMPUS_IN] = Route(_endpoint(topology, pool_host, 4), pool_host)
    for layer in topology.layers:
        elsewhere = layer.settings.get(HOST_KEY)
        if elsewhere != host:
            for neuron_id in layer.neurons:
                for name, offset in _neuron_names(topology, neuron_id).items():
                    routes[name] = Route(_endpoint(topology, elsewhere, offset), elsewhere)
    return routes


def control_tcp(topology: "Topology", host: str) -> str:
    """Where a host's root supervisor answers control requests over TCP (CURVE)."""
    return _endpoint(topology, host, 0)


def events_tcp(topology: "Topology", host: str) -> tuple[str, str]:
    """Where a host's event bus publishes, and answers ``recent_events``, over TCP (CURVE)."""
    return _endpoint(topology, host, 2), _endpoint(topology, host, 3)
