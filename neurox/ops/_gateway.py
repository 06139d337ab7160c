"""The control gateway: every control socket of a host reachable over TCP, under CURVE, through one port.

A host's processes answer control requests on ipc sockets in its run directory (``RUN_DIR/<path with / as
.>.ctl``). The node agent of a host in a network spread over hosts also runs this gateway, a ROUTER at
``tcp://ADDRESS:BASE+5`` that serves CURVE for the host's allow-list, and relays each request to the
local process named by its ``path`` (the process's place in the tree: ``root``, ``root/mid/L1``,
``root/L3/L3.n0``, ``root/reshaper``), and the reply back. A request is the usual control map plus
``path`` (default ``root``); the reply is the process's own, ``rid`` restored. ``path = "gateway"``
asks the gateway itself (``ping``, ``status``, ``endpoints``: this host's TCP endpoints, so a client
with only the gateway's address finds the rest; ``adopt_topology``: the network's new live shape, sent
by the reshaper after a change, kept in this host's data directory and followed by its ``tcp.json``,
``neurox.neuron._spread``). Errors of its own: ``not_found`` (no such process
on this host), ``bad_request`` (a path that is not one), ``malformed``/``oversized``/``wrong_type``.

Why one gateway and not a TCP port per process (docs/deployment.md): processes come and go (restarts,
reshapes, pool twins), a port per process would be allocated live and need a CURVE server and ZAP
handler each; the gateway is one port and one allow-list per host, and the ipc sockets stay private to
the host. ``neurox.neuron``'s :class:`GatewayClient` is the client side, with ``ControlClient``'s ``call``.
"""
from __future__ import annotations

import itertools
import os
import re
import threading
import time
from typing import Any

import zmq

from ..neuron import GATEWAY_OFFSET, GATEWAY_PATH, GatewayClient, Topology, adopt_topology
from ..runtime import Args, ConfigError, CurveKeys, FrameError, Reply, arguments, make_socket, op_arguments, pack, unpack_map
from ..runtime import serve_curve
from ..supervisor_tree import control_endpoint

OWN_OPS = ("ping", "status", "endpoints", "adopt_topology")
REQUEST_MAX_BYTES = 1024 * 1024
PENDING_S = 120.0
"""A request whose process never answered is forgotten after this long (its client gave up long before)."""


class AdoptTopology(Args):
    topology: dict[str, Any]
    """The reshaper's ``topology`` answer: the network's new live shape."""


GATEWAY_ARGS = op_arguments("gateway", {"adopt_topology": AdoptTopology})

PATH = re.compile(r"root(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")


def gateway_endpoint(root_tcp: str) -> str:
    """The gateway's TCP endpoint beside a host's root control endpoint (``tcp://ADDRESS:BASE``)."""
    address, port = root_tcp.rsplit(":", 1)
    return f"{address}:{int(port) + GATEWAY_OFFSET}"


def target_of(run_dir: str, path) -> str:
    """The local control endpoint a path names; ValueError (bad_request) or LookupError (not_found)."""
    if not isinstance(path, str) or not PATH.fullmatch(path):
        raise ValueError(f"'path' must be a process's place in the tree (root, root/L2, ...), got {path!r}")
    endpoint = control_endpoint(run_dir, path)
    if not os.path.exists(endpoint[len("ipc://"):]):
        raise LookupError(f"no process at {path} on this host")
    return endpoint


class Gateway(threading.Thread):
    """The relay, a daemon thread of the node agent: :meth:`close` stops it."""

    def __init__(self, ctx: zmq.Context, run_dir: str, data_dir: str, bind: str, keys: CurveKeys, info: dict):
        """``info``: this host's name (``host``) and TCP endpoints, the ``endpoints`` answer."""
        super().__init__(name="neurox-gateway", daemon=True)
        self.ctx, self.run_dir, self.data_dir, self.info = ctx, run_dir, data_dir, info
        self.front = make_socket(ctx, zmq.ROUTER, linger_ms=0)
        serve_curve(self.front, keys)
        self.front.bind(bind)
        self.endpoint = bind
        self.targets: dict[str, zmq.Socket] = {}
        self.pending: dict[int, tuple[list[bytes], object, bool, float]] = {}
        """gateway rid -> (the client's envelope, its rid, whether it sent one, when)."""
        self.rids = itertools.count(1)
        self.counters = {"forwarded": 0, "replied": 0, "refused": 0, "bad_frames": 0, "expired": 0}
        self.stopping = threading.Event()
        self.poller = zmq.Poller()
        self.poller.register(self.front, zmq.POLLIN)

    def run(self) -> None:
        """Relay until :meth:`close` (the sockets, made before the thread started, are used only here)."""
        next_expiry = time.monotonic() + PENDING_S
        try:
            while not self.stopping.is_set():
                for sock, _ in self.poller.poll(100):
                    if sock is self.front:
                        self._on_request(self.front.recv_multipart())
                    else:
                        self._on_reply(sock.recv_multipart())
                if time.monotonic() > next_expiry:
                    self._expire(time.monotonic())
                    next_expiry = time.monotonic() + PENDING_S
        finally:
            for sock in (self.front, *self.targets.values()):
                sock.close(linger=0)

    def _on_request(self, frames: list[bytes]) -> None:
        envelope, body = frames[:-1], frames[-1]
        try:
            request = unpack_map(body, REQUEST_MAX_BYTES)
        except FrameError as exc:
            self.counters["bad_frames"] += 1
            return self._answer(envelope, {"ok": False, "error": exc.kind, "detail": exc.detail})
        path = request.pop("path", "root")
        rid, has_rid = request.get("rid"), "rid" in request
        if path == GATEWAY_PATH:
            return self._answer(envelope, {**self._own(request), "rid": rid})
        try:
            endpoint = target_of(self.run_dir, path)
        except (ValueError, LookupError) as exc:
            self.counters["refused"] += 1
            error = "bad_request" if isinstance(exc, ValueError) else "not_found"
            return self._answer(envelope, {"ok": False, "error": error, "detail": str(exc), "rid": rid})
        sock = self.targets.get(endpoint)
        if sock is None:
            sock = self.targets[endpoint] = make_socket(self.ctx, zmq.DEALER, connect=endpoint, linger_ms=0)
            self.poller.register(sock, zmq.POLLIN)
        gateway_rid = next(self.rids)
        self.pending[gateway_rid] = (envelope, rid, has_rid, time.monotonic())
        sock.send_multipart([b"", pack({**request, "rid": gateway_rid})])
        self.counters["forwarded"] += 1

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            reply = unpack_map(frames[-1], REQUEST_MAX_BYTES)
        except FrameError:
            return
        found = self.pending.pop(reply.get("rid"), None)
        if found is None:
            return  # expired meanwhile
        envelope, rid, has_rid, _ = found
        if has_rid:
            reply["rid"] = rid
        else:
            reply.pop("rid", None)
        self.counters["replied"] += 1
        self._answer(envelope, reply)

    def _answer(self, envelope: list[bytes], reply: dict) -> None:
        try:
            self.front.send_multipart([*envelope, pack(reply)])
        except zmq.ZMQError:
            pass  # the client went away (ROUTER_MANDATORY)

    def _own(self, request: dict) -> dict:
        """The reply to a request for the gateway itself (without its rid)."""
        op = request.get("op")
        if op not in OWN_OPS:
            return {"ok": False, "error": "unknown_op", "detail": f"the gateway answers {', '.join(OWN_OPS)}"}
        if op == "adopt_topology":
            try:
                topology = Topology.from_dict(arguments(op, AdoptTopology, request).topology)
                return {"ok": True, "result": adopt_topology(self.run_dir, self.data_dir, topology, self.info["host"])}
            except Reply as exc:
                return {"ok": False, "error": exc.error, "detail": exc.detail}
            except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
                return {"ok": False, "error": "bad_request", "detail": f"not a topology this host can run: {exc!r}"}
        if op == "ping":
            return {"ok": True, "result": "pong"}
        if op == "endpoints":
            return {"ok": True, "result": self.info}
        return {"ok": True, "result": {**self.counters, "pending": len(self.pending), "targets": len(self.targets),
                                       **self.info}}

    def _expire(self, now: float) -> None:
        for gateway_rid in [r for r, p in self.pending.items() if now - p[3] > PENDING_S]:
            del self.pending[gateway_rid]
            self.counters["expired"] += 1

    def close(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


class Remote:
    """A host reached through its gateway with a client's keys: ``neurox probe|reshape|tui --remote``."""

    def __init__(self, gateway: str, keys_dir: str, name: str, server: str):
        keys = CurveKeys.load(keys_dir, name)  # KeysError names the file that is missing
        self.gateway, self.curve = gateway, keys.client_options(keys.server_key(server))

    def client(self, ctx: zmq.Context, path: str, timeout: float = 3.0) -> GatewayClient:
        return GatewayClient(ctx, self.gateway, path, self.curve, timeout)

    def at(self, path: str) -> "RemotePath":
        return RemotePath(self, path)


class RemotePath:
    """A process of a remote host, by its path: what a tool holds instead of an ipc endpoint."""

    def __init__(self, remote: Remote, path: str):
        self.remote, self.path = remote, path

    def child(self, child_id: str) -> "RemotePath":
        return RemotePath(self.remote, f"{self.path}/{child_id}")

    def __str__(self) -> str:
        return f"{self.path} via {self.remote.gateway}"
