"""Request/reply over ZeroMQ: the control socket every supervisor and neuron answers on.

A request is one msgpack map with an ``op`` key; a reply is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": ATOM, "detail": TEXT}``. The server side is a ROUTER, so a client may use
REQ (simplest) or DEALER with an empty delimiter frame (to pipeline requests).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import zmq

from ._bad_frames import BadFrames
from ._sockets import CONTROL_HWM, MAX_MESSAGE_BYTES, make_socket
from ._wire import FrameError, pack, unpack_map

CONTROL_MAX_BYTES = 1024 * 1024
"""Largest control request accepted; a larger one gets an ``oversized`` error reply."""


class ControlError(Exception):
    """An error reply (``error`` is the atom, e.g. ``not_found``) or an unreachable peer."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.detail = detail


class Reply(Exception):
    """Raised by a handler to answer with an error atom instead of a result."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(error)
        self.error = error
        self.detail = detail


REJECTED = ("malformed", "oversized", "wrong_type", "bad_request", "unknown_op")
"""Error atoms that mean the request itself was bad (counted as bad frames by ``serve_one``)."""


def answer(body: bytes, handlers: dict[str, Callable[[dict], object]]) -> dict:
    """The reply map for one request body; never raises for a bad request."""
    request: dict = {}
    try:
        request = unpack_map(body, CONTROL_MAX_BYTES)
        op = request.get("op")
        if not isinstance(op, str):
            raise Reply("bad_request", "a request needs a string 'op'")
        handler = handlers.get(op)
        if handler is None:
            raise Reply("unknown_op", f"{op!r}; known: {', '.join(sorted(handlers))}")
        reply = {"ok": True, "result": handler(request)}
    except FrameError as exc:
        reply = {"ok": False, "error": exc.kind, "detail": exc.detail}
    except Reply as exc:
        reply = {"ok": False, "error": exc.error, "detail": exc.detail}
    except (KeyError, TypeError, ValueError) as exc:
        reply = {"ok": False, "error": "bad_request", "detail": f"{type(exc).__name__}: {exc}"}
    if "rid" in request:
        reply["rid"] = request["rid"]
    return reply


def handle_request(frames: list[bytes], handlers: dict[str, Callable[[dict], object]]) -> list[bytes]:
    """Turn one ROUTER message into its reply frames (none if it has no envelope to answer to)."""
    if len(frames) < 2:
        return []
    return [*frames[:-1], pack(answer(frames[-1], handlers))]


def serve_one(sock: zmq.Socket, handlers: dict[str, Callable[[dict], object]],
              bad: BadFrames | None = None) -> None:
    """Answer one waiting request on a ROUTER socket (call when it is readable).

    Rejected requests are counted in ``bad`` (kinds prefixed ``control:``) when it is given.
    """
    frames = sock.recv_multipart()
    if len(frames) < 2:
        if bad is not None:
            bad.note("control:no_envelope", "a message without an envelope")
        return
    reply = answer(frames[-1], handlers)
    if bad is not None and not reply["ok"] and reply["error"] in REJECTED:
        bad.note(f"control:{reply['error']}", reply["detail"])
    try:
        sock.send_multipart([*frames[:-1], pack(reply)], zmq.NOBLOCK)
    except (zmq.Again, zmq.ZMQError):
        pass  # the client is gone or not reading; the request has been handled


_request_ids = itertools.count(1)


class ControlClient:
    """A DEALER to one control endpoint; :meth:`call` raises ControlError on error or timeout."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout: float = 5.0, curve: dict | None = None):
        self.ctx = ctx
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve = curve
        self.sock = self._open()

    def _open(self) -> zmq.Socket:
        if not self.curve:  # over TCP with CURVE if the run directory's tcp.json routes it to another host
            return make_socket(self.ctx, zmq.DEALER, connect=self.endpoint, hwm=CONTROL_HWM, linger_ms=0)
        sock = make_socket(self.ctx, zmq.DEALER, hwm=CONTROL_HWM, linger_ms=0)
        sock.curve_secretkey = self.curve["secret"]
        sock.curve_publickey = self.curve["public"]
        sock.curve_serverkey = self.curve["server"]
        sock.connect(self.endpoint)
        return sock

    def call(self, op: str, timeout: float | None = None, **args):
        request_id = next(_request_ids)
        self.sock.send_multipart([b"", pack({"op": op, "rid": request_id, **args})])
        wait_ms = int(1000 * (self.timeout if timeout is None else timeout))
        while self.sock.poll(wait_ms):
            frames = self.sock.recv_multipart()
            reply = unpack_map(frames[-1], MAX_MESSAGE_BYTES)  # a reply is as large as the answer is
            if reply.get("rid", request_id) != request_id:
                continue  # a late answer to an earlier request that timed out
            if reply.get("ok"):
                return reply.get("result")
            raise ControlError(reply.get("error", "error"), reply.get("detail", ""))
        # Reset the socket so a late reply cannot be mistaken for the next one.
        self.sock.close()
        self.sock = self._open()
        raise ControlError("timeout", f"{self.endpoint} did not answer {op!r} within {wait_ms} ms")

    def close(self) -> None:
        self.sock.close()


def call(ctx: zmq.Context, endpoint: str, op: str, timeout: float = 5.0, **args):
    """One request to ``endpoint``: open, ask, close."""
    client = ControlClient(ctx, endpoint, timeout)
    try:
        return client.call(op, **args)
    finally:
        client.close()
