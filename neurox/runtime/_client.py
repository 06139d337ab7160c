"""The one client of the control protocol: every request NeuroX makes to a control socket goes through here.

A request is ``[b"", msgpack {"op", "rid", ...args}]`` on a DEALER (the empty frame stands for REQ's
delimiter); the reply carries the same ``rid``, so a late answer to a request that timed out is never
taken for the next one. :func:`result_of` turns a reply into its result or a :class:`ControlError`.
Four ways to ask, one wire:

- :class:`ControlClient` -- a DEALER kept open to one endpoint, one blocking :meth:`~ControlClient.call`
  at a time; :func:`call` is one request (open, ask, close).
- :func:`fan_out` -- one request to each of many endpoints, all in flight together, one deadline.
- :class:`Calls` -- for a process with a poll loop: send, go on, and be called back with the answer
  (or a ``timeout`` error) later; a dead or hung peer costs the loop nothing.
- :func:`call_async` -- one request from asyncio code (the TUI), on a ``zmq.asyncio`` context.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import msgspec
import zmq

from ._config import explain
from ._control import ReplyFrame
from ._curve import connect_curve
from ._sockets import CONTROL_HWM, MAX_MESSAGE_BYTES, make_socket
from ._wire import FrameError, pack, unpack_map

IDLE_CLOSE_S = 60.0
"""A :class:`Calls` DEALER not used for this long is closed (the process it talked to was removed)."""

Callback = Callable[[object, "ControlError | None"], None]
_request_ids = itertools.count(1)


class ControlError(Exception):
    """An error reply (``error`` is the atom, e.g. ``not_found``) or an unreachable peer (``timeout``)."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.detail = detail


def request_frames(op: str, rid: int, args: dict) -> list[bytes]:
    """The frames of one request as a DEALER sends them."""
    return [b"", pack({"op": op, "rid": rid, **args})]


def result_of(reply: ReplyFrame):
    """A reply's result, or its error raised as ControlError."""
    if reply.ok:
        return reply.result
    raise ControlError(reply.error, reply.detail)


def read_reply(frames: list[bytes]) -> ReplyFrame:
    """The reply in a DEALER's received frames (a reply is as large as its answer is); FrameError
    (``wrong_type``, naming the key) for a map that is not a reply."""
    reply = unpack_map(frames[-1], MAX_MESSAGE_BYTES)
    try:
        return msgspec.convert(reply, ReplyFrame)
    except msgspec.ValidationError as exc:
        raise FrameError("wrong_type", f"not a control reply: {explain(str(exc), ReplyFrame, reply)}") from None


def dealer(ctx: zmq.Context, endpoint: str, curve: dict | None = None) -> zmq.Socket:
    """A DEALER connected to ``endpoint``, as a CURVE client when ``curve`` gives the keys
    (``secret``, ``public``, ``server``); without them :func:`make_socket` routes by the run directory's
    ``tcp.json``."""
    if not curve:
        return make_socket(ctx, zmq.DEALER, connect=endpoint, hwm=CONTROL_HWM, linger_ms=0)
    sock = make_socket(ctx, zmq.DEALER, hwm=CONTROL_HWM, linger_ms=0)
    connect_curve(sock, curve)
    sock.connect(endpoint)
    return sock


class ControlClient:
    """A DEALER to one control endpoint; :meth:`call` raises ControlError on error or timeout."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout: float = 5.0, curve: dict | None = None):
        self.ctx = ctx
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve = curve
        self.sock = dealer(ctx, endpoint, curve)

    def call(self, op: str, timeout: float | None = None, **args):
        request_id = next(_request_ids)
        self.sock.send_multipart(request_frames(op, request_id, args))
        wait_ms = int(1000 * (self.timeout if timeout is None else timeout))
        while self.sock.poll(wait_ms):
            reply = read_reply(self.sock.recv_multipart())
            if reply.rid is not msgspec.UNSET and reply.rid != request_id:
                continue  # a late answer to an earlier request that timed out
            return result_of(reply)
        # Reset the socket so a late reply cannot be mistaken for the next one.
        self.sock.close()
        self.sock = dealer(self.ctx, self.endpoint, self.curve)
        raise ControlError("timeout", f"{self.endpoint} did not answer {op!r} within {wait_ms} ms")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call(ctx: zmq.Context, endpoint: str, op: str, timeout: float = 5.0, **args):
    """One request to ``endpoint``: open, ask, close."""
    with ControlClient(ctx, endpoint, timeout) as client:
        return client.call(op, **args)


def fan_out(ctx: zmq.Context, endpoints: dict[str, str], op: str, timeout: float = 2.0,
            each: dict[str, dict] | None = None, **args) -> dict[str, object]:
    """Send ``op`` to every endpoint (``{name: endpoint}``) at once; ``{name: result or ControlError}``.
    ``each`` adds arguments of a name's own (``{name: {arg: value}}``) to the common ``args``."""
    socks: dict[str, zmq.Socket] = {}
    answers: dict[str, object] = {}
    poller = zmq.Poller()
    try:
        for name, endpoint in endpoints.items():
            sock = dealer(ctx, endpoint)
            sock.send_multipart(request_frames(op, next(_request_ids), {**args, **(each or {}).get(name, {})}),
                                zmq.NOBLOCK)
            socks[name] = sock
            poller.register(sock, zmq.POLLIN)
        by_sock = {sock: name for name, sock in socks.items()}
        deadline = time.monotonic() + timeout
        while len(answers) < len(socks) and (left := deadline - time.monotonic()) > 0:
            for sock, _ in poller.poll(int(left * 1000) + 1):
                name = by_sock[sock]
                try:
                    answers[name] = result_of(read_reply(sock.recv_multipart()))
                except FrameError as exc:
                    answers[name] = ControlError(exc.kind, exc.detail)
                except ControlError as exc:
                    answers[name] = exc
                poller.unregister(sock)
        for name in socks:
            answers.setdefault(name, ControlError("timeout", f"{endpoints[name]} did not answer {op!r} "
                                                             f"within {timeout} s"))
    finally:
        for sock in socks.values():
            sock.close()
    return answers


class Calls:
    """Requests in flight from a process with a poll loop: register each new DEALER with ``watch``
    (it is passed to ``watch(sock, on_readable)``) and call :meth:`expire` now and then."""

    def __init__(self, ctx: zmq.Context, watch: Callable, unwatch: Callable, curve_for: Callable = lambda e: None):
        self.ctx = ctx
        self.watch, self.unwatch = watch, unwatch
        self.curve_for = curve_for
        self.socks: dict[str, zmq.Socket] = {}
        self.used: dict[str, float] = {}
        self.pending: dict[int, tuple[str, float, Callback, str]] = {}

    def _sock(self, endpoint: str) -> zmq.Socket:
        sock = self.socks.get(endpoint)
        if sock is None:
            sock = self.socks[endpoint] = dealer(self.ctx, endpoint, self.curve_for(endpoint))
            self.watch(sock, lambda: self.on_readable(endpoint))
        self.used[endpoint] = time.monotonic()
        return sock

    def busy(self, endpoint: str, op: str) -> bool:
        """A request ``op`` to ``endpoint`` is still waiting for its answer."""
        return any(e == endpoint and o == op for e, _, _, o in self.pending.values())

    def call(self, endpoint: str, op: str, callback: Callback, timeout: float = 1.0, **args) -> None:
        rid = next(_request_ids)
        try:
            self._sock(endpoint).send_multipart(request_frames(op, rid, args), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            callback(None, ControlError("unreachable", f"{endpoint}: {exc}"))
            return
        self.pending[rid] = (endpoint, time.monotonic() + timeout, callback, op)

    def on_readable(self, endpoint: str) -> None:
        sock = self.socks.get(endpoint)
        while sock is not None and sock.poll(0):
            try:
                reply = read_reply(sock.recv_multipart())
            except FrameError:
                continue
            waiting = self.pending.pop(reply.rid, None)
            if waiting is None:
                continue  # the answer to a request that already timed out
            try:
                result = result_of(reply)
            except ControlError as exc:
                waiting[2](None, exc)
            else:
                waiting[2](result, None)

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


async def call_async(ctx, endpoint: str, op: str, timeout: float = 2.0, curve: dict | None = None, **args):
    """One request from asyncio code; ``ctx`` is a ``zmq.asyncio.Context``; ``curve`` (public, secret,
    server) for a TCP endpoint under CURVE. ControlError on an error reply, a timeout (``timeout``) or a
    socket that cannot be used (``unreachable``, e.g. while closing)."""
    try:
        sock = ctx.socket(zmq.DEALER)
    except zmq.ZMQError as exc:
        raise ControlError("unreachable", str(exc)) from None
    sock.setsockopt(zmq.LINGER, 0)
    if curve:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve["public"], curve["secret"], curve["server"]
    try:
        sock.connect(endpoint)
        await sock.send_multipart(request_frames(op, next(_request_ids), args))
        if not await sock.poll(int(timeout * 1000)):
            raise ControlError("timeout", f"{endpoint} did not answer {op!r} within {timeout} s")
        reply = read_reply(await sock.recv_multipart())
    except zmq.ZMQError as exc:
        raise ControlError("unreachable", str(exc)) from None
    finally:
        sock.close()
    return result_of(reply)
