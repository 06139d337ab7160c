"""The Supervisor service: one supervised process that keeps the picture of a whole network.

It runs as a worker under the network's root (``root/service``), like an extension, and:

- subscribes to the event bus of its own host and of every configured peer host, where neurons
  publish a ``neuron_report`` (their ``status`` and ``metrics``) every second and supervisors their
  lifecycle events;
- walks each host's supervisors (``status``) every few seconds and soon after a lifecycle event, and
  polls the workers that do not report (MessengerIn/Out, extensions) -- all without ever waiting on one
  process (:class:`~neurox.runtime.Calls`);
- takes the loss of every answer from its host's outputs bus (the rolling mean loss);
- answers queries on its control socket (``ipc://RUN_DIR/root.service.ctl``, and any ``bind``
  endpoints): ``neuron_status``, ``neuron_metrics``, ``tree``, ``recent_events``, ``picture``,
  ``status``, ``metrics``, ``ping`` (docs/protocol.md, "Supervisor service").

A peer host is reached through its bus's PUB endpoint and, if given, its root's control endpoint and
its bus's control endpoint (for the history before the service joined). A peer's supervisors below
its root are walked only where their endpoints are reachable from here (TCP, or an ipc path on this
machine); otherwise its events and reports alone build its part of the picture.
"""
from __future__ import annotations

import os
import socket
import time
from collections import deque
from functools import partial
from typing import Annotated

import msgspec
import zmq

from ..ext import Extension, outputs_endpoint
from ..neuron import control_tcp, events_tcp
from ..runtime import (EVENT_HWM, EVENT_MAX_BYTES, ControlError, typed, FrameError, KeysError, Reply, connect_curve,
                       ipc_endpoint, make_socket, tcp_plan, typed_ops, unpack_map)
from ..supervisor_tree import ChildSpec, control_endpoint
from ..runtime import Calls, rss_bytes
from ._picture import HISTORY, HostView, Picture, Unknown, Ambiguous
from ._service_ops import SERVICE_ARGS, NeuronMetrics, NeuronStatus, OnHost, RecentEvents, TreeArgs

SERVICE_ID = "service"
SERVICE_TARGET = "neurox.ops._service:run_service"
WALK_INTERVAL_S = 2.0
"""Every host's supervisors are asked for their ``status`` this often..."""
WALK_SOON_S = 0.1
"""... and this soon after an event that changed a tree."""
POLL_INTERVAL_S = 1.0
"""Workers that do not report (messengers, extensions) are asked for ``status`` and ``metrics`` this often."""
CALL_TIMEOUT_S = 1.0
DRAIN = 1000
"""Messages taken from one bus in one go, so that one busy host cannot starve the others."""
DEDUPE_WINDOW_S = 10.0
"""For this long after the start, events are remembered so that the history read from each bus and
what arrives live are applied once each."""


def service_endpoint(run_dir: str) -> str:
    """The Supervisor service's control endpoint in a network's run directory."""
    return control_endpoint(run_dir, f"root/{SERVICE_ID}")


class Peer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Another host of the network (a ``[[service.peers]]`` table): its bus's PUB, and optionally its root's
    and its bus's control sockets."""

    name: str
    events: str
    control: str | None = None
    events_control: str | None = None


class ServiceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a node (or ``neurox run``) starts its Supervisor service; its own schema.

    In a node's TOML config, the optional ``[service]`` table::

        [service]
        enabled = true                         # default
        host = "rack1-a"                       # this host's name in the picture (default: the host name)
        bind = ["tcp://0.0.0.0:7110"]          # more endpoints for its control socket
        history = 1000                         # lifecycle events kept
        [[service.peers]]
        name = "rack1-b"
        events = "tcp://10.0.0.2:7101"         # the peer's event bus (PUB)
        control = "tcp://10.0.0.2:7100"        # optional: its root supervisor
        events_control = "tcp://10.0.0.2:7102" # optional: its bus's history
    """

    enabled: bool = True
    host: str | None = None
    bind: tuple[str, ...] = ()
    history: Annotated[int, msgspec.Meta(ge=1)] = HISTORY
    peers: tuple[Peer, ...] = ()

    def __post_init__(self):
        if not all("://" in b for b in self.bind):
            raise ValueError("bind is a list of endpoints such as 'tcp://0.0.0.0:7110'")
        names = [p.name for p in self.peers] + [self.host]
        if len(set(names)) != len(names):
            raise ValueError("host and peer names must be unique")

    @classmethod
    def from_mapping(cls, doc: dict, where: str = "[service]") -> "ServiceConfig":
        """Check a ``[service]`` table; ConfigError (a ValueError) names the key and what was wrong."""
        return typed(cls, doc, where)

    def on_host(self, topology, host: str | None) -> "ServiceConfig":
        """This config for a node agent that runs ``host``'s part of ``topology`` (None: all of it).

        In a network spread over hosts, the service takes the host's name, and follows every other
        host of the topology (its bus and root over TCP, with CURVE) unless peers are configured."""
        if host is None:
            return self
        peers = self.peers or tuple(Peer(other, events_tcp(topology, other)[0], control_tcp(topology, other),
                                         events_tcp(topology, other)[1])
                                    for other in topology.hosts if other != host)
        return msgspec.structs.replace(self, host=self.host or host, peers=peers)

    def spec(self, data_dir: str) -> ChildSpec:
        """The service as a child of a network's root (after the layers and the extensions)."""
        args = {"data_dir": data_dir, "host": self.host or socket.gethostname(), "bind": list(self.bind),
                "history": self.history, "peers": [msgspec.structs.asdict(p) for p in self.peers]}
        return ChildSpec(SERVICE_ID, SERVICE_TARGET, args, "permanent", 5000, "worker", ("neurox.ops._service",))


def service_children(data_dir: str, config: ServiceConfig | None = None) -> list[ChildSpec]:
    """The service's child spec in a list (empty when the config disables it), for ``Network(extensions=...)``."""
    config = config or ServiceConfig()
    return [config.spec(data_dir)] if config.enabled else []


class SupervisorService(Extension):
    kind = "service"

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.host = settings.get("host") or socket.gethostname()
        for endpoint in settings.get("bind", []):
            self.control.bind(endpoint)
        local = HostView(self.host, ipc_endpoint(self.run_dir, "events.pub"), control_endpoint(self.run_dir, "root"),
                         ipc_endpoint(self.run_dir, "events.ctl"), local=True, run_dir=self.run_dir)
        peers = [HostView(p["name"], p["events"], p.get("control"), p.get("events_control"))
                 for p in settings.get("peers", [])]
        self.picture = Picture([local, *peers], history=int(settings.get("history", HISTORY)))
        self.curve = self._curve_options(peers)
        self.calls = Calls(self.ctx, self.watch, self.unwatch, self.curve.get)
        self.buses: list[zmq.Socket] = []
        for host in self.picture.hosts.values():
            bus = make_socket(self.ctx, zmq.SUB, hwm=EVENT_HWM, linger_ms=0)
            if host.events in self.curve:
                connect_curve(bus, self.curve[host.events])
            bus.connect(host.events)
            bus.setsockopt(zmq.SUBSCRIBE, b"")
            self.buses.append(bus)
            self.watch(bus, partial(self._on_bus, host.name, bus))
        self.outputs = make_socket(self.ctx, zmq.SUB, connect=outputs_endpoint(self.run_dir), hwm=EVENT_HWM,
                                   linger_ms=0)
        self.outputs.setsockopt(zmq.SUBSCRIBE, b"result")
        self.watch(self.outputs, self._on_outputs)
        now = time.monotonic()
        self.next_walk = {name: now for name in self.picture.hosts}
        self.next_poll = now
        self.dedupe_until = now + DEDUPE_WINDOW_S
        self.seen_keys: set | None = set()
        self.handlers.update(typed_ops(SERVICE_ARGS, {
            "neuron_status": self.neuron_status, "neuron_metrics": self.neuron_metrics, "tree": self.tree,
            "recent_events": self.recent_events, "picture": lambda r: self.picture.export(time.time()),
            "latency": lambda r: self.picture.latency(self._host_arg(r))}))
        for host in self.picture.hosts.values():
            if _reachable(host.events_control):
                self.calls.call(host.events_control, "recent_events", partial(self._caught_up, host.name),
                                CALL_TIMEOUT_S * 3, limit=100_000)

    def _curve_options(self, peers: list[HostView]) -> dict[str, dict]:
        """CURVE client options for the peers' TCP endpoints, when this host is part of a network spread
        over hosts (its run directory's ``tcp.json`` names the keys): endpoint -> options."""
        plan = tcp_plan(self.run_dir)
        if plan is None:
            return {}
        options = {}
        for peer in peers:
            try:
                server = plan.keys.server_key(peer.name)
            except KeysError as exc:
                print(f"service: no CURVE key for peer {peer.name} ({exc}); reaching it without CURVE",
                      flush=True)
                continue
            for endpoint in (peer.events, peer.control, peer.events_control):
                if endpoint and endpoint.startswith("tcp://"):
                    options[endpoint] = plan.keys.client_options(server)
        return options

    def ready_info(self) -> dict:
        return {"kind": self.kind, "host": self.host, "hosts": list(self.picture.hosts)}

    # -- inputs ------------------------------------------------------------------------------------
    def _on_bus(self, host: str, bus: zmq.Socket) -> None:
        now = time.time()
        for _ in range(DRAIN):
            try:
                frames = bus.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                event = unpack_map(frames[-1], EVENT_MAX_BYTES)
            except FrameError as exc:
                self.bad.note(exc.kind, exc.detail)
                continue
            self._apply(host, event, now)

    def _apply(self, host: str, event: dict, now: float) -> None:
        if self.seen_keys is not None:
            key = (host, event.get("source"), event.get("event"), event.get("t"))
            if key in self.seen_keys:
                return
            self.seen_keys.add(key)
        if self.picture.on_event(host, event, now):
            self.next_walk[host] = min(self.next_walk[host], time.monotonic() + WALK_SOON_S)

    def _caught_up(self, host: str, events, error: ControlError | None) -> None:
        """The bus's history, read once at the start: what happened before the service subscribed."""
        if error is not None or not isinstance(events, list):
            self.count("history_errors")
            return
        now = time.time()
        for event in events:
            if isinstance(event, dict):
                self._apply(host, event, now)
        self.picture.recent = deque(sorted(self.picture.recent, key=lambda e: e.get("t", 0.0)),
                                    maxlen=self.picture.recent.maxlen)

    def _on_outputs(self) -> None:
        for _ in range(DRAIN):
            try:
                frames = self.outputs.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                loss = unpack_map(frames[-1]).get("loss")
            except FrameError:
                continue
            if isinstance(loss, (int, float)) and not isinstance(loss, bool):
                self.picture.on_loss(self.host, loss)

    # -- walks and polls ---------------------------------------------------------------------------
    def tick(self) -> float | None:
        now = time.monotonic()
        self.calls.expire(now)
        if self.seen_keys is not None and now > self.dedupe_until:
            self.seen_keys = None
        for host in self.picture.hosts.values():
            if now >= self.next_walk[host.name] and _reachable(host.control) \
                    and not self.calls.busy(host.control, "status"):
                self.next_walk[host.name] = now + WALK_INTERVAL_S
                self.calls.call(host.control, "status", partial(self._walked, host.name, "root", time.time()),
                                CALL_TIMEOUT_S)
        if now >= self.next_poll:
            self.next_poll = now + POLL_INTERVAL_S
            self._poll_workers()
        deadlines = [*self.next_walk.values(), self.next_poll, self.calls.next_deadline() or self.next_poll]
        return max(0.0, min(deadlines) - time.monotonic())

    def _walked(self, host: str, path: str, asked: float, status, error: ControlError | None) -> None:
        if error is not None or not isinstance(status, dict):
            if path == "root" and host in self.picture.hosts:
                self.picture.hosts[host].walk_error = str(error)
            return
        for row in self.picture.on_supervisor_status(host, path, status, time.time(), asked):
            control = row.get("control")
            if row.get("type") == "supervisor" and isinstance(row.get("pid"), int) and _reachable(control) \
                    and not self.calls.busy(control, "status"):
                self.calls.call(control, "status", partial(self._walked, host, f"{path}/{row['id']}", time.time()),
                                CALL_TIMEOUT_S)

    def _poll_workers(self) -> None:
        mine = f"root/{SERVICE_ID}"
        for view in list(self.picture.processes.values()):
            if view.kind != "worker" or not isinstance(view.pid, int) or not _reachable(view.control):
                continue
            if view.host == self.host and view.path == mine:
                self.picture.on_worker(view.host, view.path, self.status(), self.metrics(), time.time())
                continue
            if not self.calls.busy(view.control, "status"):
                self.calls.call(view.control, "status", partial(self._polled, view.host, view.path, "status"),
                                CALL_TIMEOUT_S)
            if not view.no_metrics and not self.calls.busy(view.control, "metrics"):
                self.calls.call(view.control, "metrics", partial(self._polled, view.host, view.path, "metrics"),
                                CALL_TIMEOUT_S)

    def _polled(self, host: str, path: str, op: str, result, error: ControlError | None) -> None:
        if error is not None:
            view = self.picture.processes.get((host, path))
            if view is not None and op == "metrics" and error.error == "unknown_op":
                view.no_metrics = True
            return
        if isinstance(result, dict):
            self.picture.on_worker(host, path, result if op == "status" else None,
                                   result if op == "metrics" else None, time.time())

    # -- queries -----------------------------------------------------------------------------------
    def _host_arg(self, request: OnHost) -> str | None:
        host = request.host
        if host is None:
            return None
        if host not in self.picture.hosts:
            raise Reply("not_found", f"no host {host!r}; known: {', '.join(self.picture.hosts)}")
        return host

    def neuron_status(self, request: NeuronStatus) -> dict:
        host, layer = self._host_arg(request), request.layer
        now = time.time()
        rows = [self.picture.neuron_row(v, now) for v in self.picture.neurons(host) if layer in (None, v.layer)]
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return {"t": now, "host": self.host, "hosts": [h.describe(now) for h in self.picture.hosts.values()],
                "counts": counts, "neurons": rows}

    def neuron_metrics(self, request: NeuronMetrics) -> dict:
        try:
            view = self.picture.find(request.id, self._host_arg(request))
        except Unknown as exc:
            raise Reply("not_found", str(exc)) from None
        except Ambiguous as exc:
            raise Reply("ambiguous", str(exc)) from None
        return self.picture.neuron_detail(view, time.time())

    def tree(self, request: TreeArgs) -> dict:
        host, detail = self._host_arg(request), request.detail
        now = time.time()
        return {"local": self.host, "hosts": [h.describe(now) for h in self.picture.hosts.values()],
                "rows": self.picture.tree(host, now, detail)}

    def recent_events(self, request: RecentEvents) -> list[dict]:
        return self.picture.events(request.limit, request.prefix, self._host_arg(request))

    def status(self) -> dict:
        now = time.time()
        neurons = self.picture.neurons()
        return {**super().status(), "host": self.host,
                "hosts": [h.describe(now) for h in self.picture.hosts.values()],
                "processes": len(self.picture.processes), "neurons": len(neurons),
                "events": self.picture.counts["events"], "reports": self.picture.counts["reports"],
                "recent_events": len(self.picture.recent)}

    def metrics(self) -> dict:
        return {**super().metrics(), **self.picture.counts, "rss_bytes": rss_bytes(),
                "calls_in_flight": len(self.calls.pending)}

    def close(self) -> None:
        self.calls.close()
        for sock in (*self.buses, self.outputs):
            sock.close()
        super().close()


def _reachable(endpoint: str | None) -> bool:
    """Worth calling from here: a TCP endpoint, or an ipc one whose socket file exists on this machine."""
    if not endpoint:
        return False
    if endpoint.startswith("ipc://"):
        return os.path.exists(endpoint[len("ipc://"):])
    return True


def run_service(args: dict, env: dict) -> None:
    """Process entry point (``SERVICE_TARGET``)."""
    SupervisorService(args, env).serve()
