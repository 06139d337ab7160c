"""Live reshaping of a network spread over hosts: every host's copy of the shape, its TCP plan, and the
processes of other hosts reached through their control gateways.

Each host keeps the live shape in its data directory (a neuron starting there reads its links from it,
and the node's next start resumes it) and its ``tcp.json`` follows the shape (a new neuron's inbox and
control socket served on TCP by its host and routed to by the others). The reshaper, on the front host,
adopts each new shape itself and has every other host adopt it through that host's gateway
(``adopt_topology``, answered by the gateway itself: ``neurox.ops._gateway``); it starts and stops a
neuron of another host through the gateway too, by its layer supervisor's path. The neurons themselves
it reaches as before: their control sockets are routed by ``tcp.json``.
"""
from __future__ import annotations

import zmq

from ..runtime import ControlClient, tcp_plan, write_tcp_plan
from ..supervisor_tree import SupervisorClient
from ._hosts import parse_address
from ._placement import front_host, tcp_exports, tcp_routes
from ._endpoints import topology_path
from ._topology import Topology, TopologyError

GATEWAY_OFFSET = 5
"""A host's control gateway listens on its base port plus this (docs/protocol.md, "Over TCP, with CURVE")."""
GATEWAY_PATH = "gateway"
"""The path that names the gateway itself in a request to it."""


def gateway_tcp(topology: Topology, host: str) -> str:
    address, base = parse_address(topology.hosts[host])
    return f"tcp://{address}:{base + GATEWAY_OFFSET}"


def replan(run_dir: str, topology: Topology, host: str) -> None:
    """Rewrite this host's ``tcp.json`` for ``topology`` (its processes follow it at their next socket)."""
    plan = tcp_plan(run_dir)
    write_tcp_plan(run_dir, host, plan.keys.keys_dir, tcp_exports(topology, host), tcp_routes(topology, host))


def adopt_topology(run_dir: str, data_dir: str, topology: Topology, host: str) -> dict:
    """``topology`` as this host's live shape (a host's gateway, asked by the reshaper): kept in its data
    directory, followed by its ``tcp.json``; TopologyError (a ValueError) if it is not one this host is in."""
    if host not in topology.hosts:
        raise TopologyError(f"host {host!r} is not among the topology's hosts {sorted(topology.hosts)}")
    topology.save(topology_path(data_dir))  # checked first
    replan(run_dir, topology, host)
    return {"host": host, "data_dir": data_dir}


def other_hosts(topology: Topology) -> list[str]:
    """The hosts the reshaper (on the front host) reaches through their gateways."""
    return [host for host in topology.hosts if host != front_host(topology)]


class GatewayClient:
    """Control requests to one process of another host, through its gateway under CURVE: ``ControlClient``'s
    interface (``call(op, **args)``, ``close()``), the process named by its ``path``."""

    def __init__(self, ctx: zmq.Context, gateway: str, path: str, curve: dict, timeout: float = 3.0):
        self.path = path
        self.client = ControlClient(ctx, gateway, timeout, curve=curve)

    def call(self, op: str, timeout: float | None = None, **args):
        return self.client.call(op, timeout=timeout, path=self.path, **args)

    def close(self) -> None:
        self.client.close()


class Hosts:
    """What the reshaper does on the hosts of a spread network."""

    def __init__(self, ctx: zmq.Context, run_dir: str, timeout: float):
        self.ctx, self.run_dir, self.timeout = ctx, run_dir, timeout
        self.data_dirs: dict[str, str] = {}
        """Each other host's data directory, as its gateway said when it adopted a shape."""

    def adopt(self, topology: Topology) -> None:
        """Every host takes ``topology`` as its live shape: this one (its topology is saved by the
        reshaper) rewrites its TCP plan; each other is asked through its gateway."""
        replan(self.run_dir, topology, front_host(topology))
        for host in other_hosts(topology):
            gateway = self.client(topology, host, GATEWAY_PATH)
            try:
                self.data_dirs[host] = gateway.call("adopt_topology", topology=topology.to_dict())["data_dir"]
            finally:
                gateway.close()

    def client(self, topology: Topology, host: str, path: str) -> GatewayClient:
        """The process at ``path`` on ``host``, through its gateway, with this host's keys (its ``tcp.json``)."""
        keys = tcp_plan(self.run_dir).keys
        return GatewayClient(self.ctx, gateway_tcp(topology, host), path, keys.client_options(keys.server_key(host)),
                             self.timeout)

    def supervisor(self, topology: Topology, host: str, path: str) -> SupervisorClient:
        """The supervisor at ``path`` on ``host``, through its gateway."""
        return SupervisorClient(None, self.ctx, self.timeout, client=self.client(topology, host, path))
