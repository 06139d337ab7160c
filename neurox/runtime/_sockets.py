"""ZeroMQ sockets with their options set on purpose, and the endpoints NeuroX uses.

Every socket gets an explicit LINGER (so closing never hangs a stopping process and never
silently waits forever on a dead peer), explicit high-water marks (so a slow or dead consumer
makes the sender block, drop or report "busy" instead of growing without bound), and a short
reconnect interval (so a replaced neuron is reached again within milliseconds).

In a network spanning hosts, the run directory's ``tcp.json`` (:mod:`._tcp`) says which ipc
endpoints are also served over TCP and which live on another host; :func:`make_socket` follows it,
with CURVE on every TCP bind and connect, so the code that asks for sockets stays host-blind.
"""
from __future__ import annotations

import os

import zmq

from ._curve import connect_curve, serve_curve
from ._tcp import tcp_plan

LINGER_MS = 200
"""How long a closing socket may keep trying to deliver what it queued."""
LINK_HWM = 1000
"""Messages queued per link before PUSH blocks (the bounded window keeps far fewer in flight)."""
CONTROL_HWM = 100
"""Control requests queued per peer; an admin client never needs more."""
EVENT_HWM = 10000
"""Events buffered per subscriber before the slowest one starts losing events (PUB semantics)."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Transport-level cap on one message: a peer sending more is disconnected before it is buffered.
Below it, each receiver applies its own, smaller limit and answers or counts an ``oversized`` frame."""
RECONNECT_IVL_MS = 5
RECONNECT_IVL_MAX_MS = 200


def make_socket(ctx: zmq.Context, kind: int, *, bind: str | None = None,
                connect: str | None = None, hwm: int = LINK_HWM,
                linger_ms: int = LINGER_MS) -> zmq.Socket:
    """A socket of ``kind`` with NeuroX's options, bound or connected as asked."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    if kind == zmq.ROUTER:
        # An unroutable reply (the client went away) raises instead of vanishing silently.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    try:
        if bind:
            if bind.startswith("ipc://"):
                os.makedirs(os.path.dirname(bind[len("ipc://"):]), mode=0o700, exist_ok=True)
            sock.bind(bind)
            _bind_exported(sock, bind)
        if connect:
            _connect_routed(sock, connect)
    except BaseException:
        sock.close(linger=0)  # a failed bind (address in use) leaves no socket behind
        raise
    return sock


def _bind_exported(sock: zmq.Socket, endpoint: str) -> None:
    """Also bind the TCP twin of an exported ipc endpoint, as a CURVE server (only that bind)."""
    plan, name = _plan_of(endpoint)
    if plan is not None and name in plan.exports:
        serve_curve(sock, plan.keys)
        sock.bind(plan.exports[name])


def _connect_routed(sock: zmq.Socket, endpoint: str) -> None:
    """Connect ``endpoint``, or over TCP with CURVE if it lives on another host."""
    plan, name = _plan_of(endpoint)
    route = plan.routes.get(name) if plan is not None else None
    if route is None:
        sock.connect(endpoint)
        return
    connect_curve(sock, plan.keys.client_options(plan.keys.server_key(route.host)))
    sock.connect(route.endpoint)


def nothing_listens(endpoint: str) -> bool:
    """Whether ``endpoint`` is an ipc one that no process serves: no socket file on this machine, and not
    routed to another host over TCP. (A TCP endpoint, or a socket file left by a dead process, can only
    be told by asking.)"""
    plan, name = _plan_of(endpoint)
    return (endpoint.startswith("ipc://") and not os.path.exists(endpoint[len("ipc://"):])
            and (plan is None or name not in plan.routes))


def _plan_of(endpoint: str):
    """(the tcp plan of an ipc endpoint's directory or None, the endpoint's name)."""
    if not endpoint.startswith("ipc://"):
        return None, endpoint
    run_dir, name = os.path.split(endpoint[len("ipc://"):])
    return tcp_plan(run_dir), name


def ipc_endpoint(run_dir: str, name: str) -> str:
    """The ipc:// endpoint of ``name`` inside a network's private run directory."""
    endpoint = f"ipc://{os.path.join(run_dir, name)}"
    if len(endpoint) - len("ipc://") > 107:
        raise ValueError(f"ipc path too long for a unix socket ({len(endpoint)} chars): {endpoint}")
    return endpoint
