"""Request/reply over ZeroMQ: the control socket every supervisor and neuron answers on.

A request is one msgpack map with an ``op`` key; a reply is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": ATOM, "detail": TEXT}``. Both are declared once as msgspec Structs
(:class:`Request`, :class:`ReplyFrame`), as the configuration's tables are (``_config``), so each end
checks them in one place. The server side is a ROUTER, so a client may use REQ (simplest) or DEALER
with an empty delimiter frame (to pipeline requests). The client side is ``_client``; a process answers
through its behaviour (``_behaviour``), which calls :func:`serve_frames`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from ._bad_frames import BadFrames
from ._wire import FrameError, pack, unpack_map

CONTROL_MAX_BYTES = 1024 * 1024
"""Largest control request accepted; a larger one gets an ``oversized`` error reply."""


class Request(msgspec.Struct):
    """What every control request holds besides its op's arguments."""

    op: str
    rid: Any = msgspec.UNSET
    """Any value, echoed in the reply."""


class ReplyFrame(msgspec.Struct):
    """A control reply: ``ok`` with a ``result``, or not ``ok`` with an ``error`` atom and a ``detail``."""

    ok: bool
    result: Any = None
    error: str = "error"
    detail: str = ""
    rid: Any = msgspec.UNSET


class Reply(Exception):
    """Raised by a handler to answer with an error atom instead of a result."""

    def __init__(self, error: str, detail: str = ""):
        super().__init__(error)
        self.error = error
        self.detail = detail


REJECTED = ("malformed", "oversized", "wrong_type", "bad_request", "unknown_op")
"""Error atoms that mean the request itself was bad (counted as bad frames by ``serve_one``)."""


Handlers = dict[str, Callable[[dict], object]] | Callable[[str, dict], object]
"""What answers requests: a map from op to ``handler(request)``, or one ``handle(op, request)``."""


def dispatch(handlers: dict[str, Callable[[dict], object]], op: str, request: dict):
    """Run ``handlers[op](request)``; an unknown op is an ``unknown_op`` error naming the known ones."""
    handler = handlers.get(op)
    if handler is None:
        raise Reply("unknown_op", f"{op!r}; known: {', '.join(sorted(handlers))}")
    return handler(request)


def request_head(request: dict) -> Request:
    """A request map's typed envelope; ``bad_request`` if it has no string ``op`` (or a key that is not a str)."""
    try:
        return msgspec.convert(request, Request)
    except msgspec.ValidationError:
        if isinstance(request.get("op"), str):
            raise Reply("bad_request", "the keys of a request are strings") from None
        raise Reply("bad_request", "a request needs a string 'op'") from None


def answer(body: bytes, handlers: Handlers) -> dict:
    """The reply map for one request body; never raises for a bad request."""
    request: dict = {}
    try:
        request = unpack_map(body, CONTROL_MAX_BYTES)
        op = request_head(request).op
        result = handlers(op, request) if callable(handlers) else dispatch(handlers, op, request)
        reply = {"ok": True, "result": result}
    except FrameError as exc:
        reply = {"ok": False, "error": exc.kind, "detail": exc.detail}
    except Reply as exc:
        reply = {"ok": False, "error": exc.error, "detail": exc.detail}
    except (KeyError, TypeError, ValueError) as exc:
        reply = {"ok": False, "error": "bad_request", "detail": f"{type(exc).__name__}: {exc}"}
    if "rid" in request:
        reply["rid"] = request["rid"]
    return reply


def handle_request(frames: list[bytes], handlers: Handlers) -> list[bytes]:
    """Turn one ROUTER message into its reply frames (none if it has no envelope to answer to)."""
    if len(frames) < 2:
        return []
    return [*frames[:-1], pack(answer(frames[-1], handlers))]


def serve_one(sock: zmq.Socket, handlers: Handlers, bad: BadFrames | None = None) -> None:
    """Answer one waiting request on a ROUTER socket (call when it is readable)."""
    serve_frames(sock, sock.recv_multipart(), handlers, bad)


def serve_frames(sock: zmq.Socket, frames: list[bytes], handlers: Handlers, bad: BadFrames | None = None) -> None:
    """Answer one request already received from ``sock`` (a ROUTER).

    Rejected requests are counted in ``bad`` (kinds prefixed ``control:``) when it is given.
    """
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
