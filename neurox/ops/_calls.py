"""Control requests to many processes at once, without waiting on any one of them.

:class:`Calls` is for a process with a poll loop (the Supervisor service): it keeps one DEALER per
endpoint, sends a request and goes on; the answer calls back when it comes, and a request left
unanswered past its deadline calls back with a ``timeout`` error. A dead or hung peer thus costs the
loop nothing. :func:`fan_out` is the blocking form for a tool: one request to each of many
endpoints, all in flight together, answers gathered until one deadline.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import zmq

from ..runtime import ControlError, FrameError, make_socket, pack, unpack_map
from ..runtime._curve import connect_curve
from ..runtime._sockets import CONTROL_HWM

REPLY_MAX_BYTES = 16 * 1024 * 1024
IDLE_CLOSE_S = 60.0
"""A DEALER not used for this long is closed (the process it talked to was removed)."""

Callback = Callable[[object, "ControlError | None"], None]


class Calls:
    """Requests in flight; register :attr:`socks` with the poller and call :meth:`on_readable`."""

    def __init__(self, ctx: zmq.Context, watch: Callable, unwatch: Callable, curve_for: Callable = lambda e: None):
        self.ctx = ctx
        self.watch, self.unwatch = watch, unwatch
        self.curve_for = curve_for
        self.socks: dict[str, zmq.Socket] = {}
        self.used: dict[str, float] = {}
        self.pending: dict[int, tuple[str, float, Callback, str]] = {}
        self.rids = itertools.count(1)

    def _sock(self, endpoint: str) -> zmq.Socket:
        sock = self.socks.get(endpoint)
        if sock is None:
            sock = make_socket(self.ctx, zmq.DEALER, hwm=CONTROL_HWM, linger_ms=0)
            curve = self.curve_for(endpoint)
            if curve:
                connect_curve(sock, curve)
            sock.connect(endpoint)
            self.socks[endpoint] = sock
            self.watch(sock, lambda: self.on_readable(endpoint))
        self.used[endpoint] = time.monotonic()
        return sock

    def busy(self, endpoint: str, op: str) -> bool:
        """A request ``op`` to ``endpoint`` is still waiting for its answer."""
        return any(e == endpoint and o == op for e, _, _, o in self.pending.values())

    def call(self, endpoint: str, op: str, callback: Callback, timeout: float = 1.0, **args) -> None:
        rid = next(self.rids)
        try:
            self._sock(endpoint).send_multipart([b"", pack({"op": op, "rid": rid, **args})], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            callback(None, ControlError("unreachable", f"{endpoint}: {exc}"))
            return
        self.pending[rid] = (endpoint, time.monotonic() + timeout, callback, op)

    def on_readable(self, endpoint: str) -> None:
        sock = self.socks.get(endpoint)
        while sock is not None and sock.poll(0):
            frames = sock.recv_multipart()
            try:
                reply = unpack_map(frames[-1], REPLY_MAX_BYTES)
            except FrameError:
                continue
            waiting = self.pending.pop(reply.get("rid"), None)
            if waiting is None:
                continue  # the answer to a request that already timed out
            callback = waiting[2]
            if reply.get("ok"):
                callback(reply.get("result"), None)
            else:
                callback(None, ControlError(str(reply.get("error", "error")), str(reply.get("detail", ""))))

    def expire(self, now: float | None = None) -> None:
        """Time out what waited too long; close sockets nobody used for a while."""
        now = time.monotonic() if now is None else now
        for rid in [rid for rid, (_, deadline, _, _) in self.pending.items() if deadline <= now]:
            endpoint, _, callback, op = self.pending.pop(rid)
            callback(None, ControlError("timeout", f"{endpoint} did not answer {op!r}"))
        for endpoint in [e for e, t in self.used.items() if now - t > IDLE_CLOSE_S and not self.busy_any(e)]:
            self._close(endpoint)

    def busy_any(self, endpoint: str) -> bool:
        return any(e == endpoint for e, _, _, _ in self.pending.values())

    def next_deadline(self) -> float | None:
        return min((deadline for _, deadline, _, _ in self.pending.values()), default=None)

    def _close(self, endpoint: str) -> None:
        sock = self.socks.pop(endpoint, None)
        self.used.pop(endpoint, None)
        if sock is not None:
            self.unwatch(sock)
            sock.close()

    def close(self) -> None:
        for endpoint in list(self.socks):
            self._close(endpoint)
        self.pending.clear()


def fan_out(ctx: zmq.Context, endpoints: dict[str, str], op: str, timeout: float = 2.0,
            **args) -> dict[str, object]:
    """Send ``op`` to every endpoint (``{name: endpoint}``) at once; ``{name: result or ControlError}``."""
    socks: dict[str, zmq.Socket] = {}
    answers: dict[str, object] = {}
    poller = zmq.Poller()
    try:
        for name, endpoint in endpoints.items():
            sock = make_socket(ctx, zmq.DEALER, hwm=CONTROL_HWM, linger_ms=0, connect=endpoint)
            sock.send_multipart([b"", pack({"op": op, **args})], zmq.NOBLOCK)
            socks[name] = sock
            poller.register(sock, zmq.POLLIN)
        by_sock = {sock: name for name, sock in socks.items()}
        deadline = time.monotonic() + timeout
        while len(answers) < len(socks) and (left := deadline - time.monotonic()) > 0:
            for sock, _ in poller.poll(int(left * 1000) + 1):
                name = by_sock[sock]
                try:
                    reply = unpack_map(sock.recv_multipart()[-1], REPLY_MAX_BYTES)
                except FrameError as exc:
                    answers[name] = ControlError(exc.kind, exc.detail)
                    continue
                answers[name] = reply.get("result") if reply.get("ok") else \
                    ControlError(str(reply.get("error", "error")), str(reply.get("detail", "")))
                poller.unregister(sock)
        for name in socks:
            answers.setdefault(name, ControlError("timeout", f"{endpoints[name]} did not answer {op!r} "
                                                             f"within {timeout} s"))
    finally:
        for sock in socks.values():
            sock.close()
    return answers


