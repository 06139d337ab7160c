"""Lifecycle events: every process PUSHes them to one event bus per network, which PUBlishes them.

Publishers PUSH (not PUB) so an event sent in the first millisecond of a process's life is queued
until the connection exists instead of being dropped by a PUB with no subscriber yet. The bus
republishes each event as two frames, ``[topic, msgpack map]`` with the topic the event's name,
so a subscriber can filter by prefix, and keeps the most recent events for late joiners.
"""
from __future__ import annotations

import collections
import signal
import time

import zmq

from ._bad_frames import BadFrames
from ._control import Reply, serve_one
from ._exit import EXIT_SHUTDOWN
from ._fork import notify_ready
from ._sockets import EVENT_HWM, make_socket
from ._wire import FrameError, pack, unpack_map

EVENT_MAX_BYTES = 256 * 1024
HISTORY = 2000


class EventPublisher:
    """Sends events to the bus; ``source`` names the sender (a supervisor or neuron path)."""

    def __init__(self, ctx: zmq.Context, bus_endpoint: str | None, source: str):
        self.source = source
        self.sock = make_socket(ctx, zmq.PUSH, connect=bus_endpoint, hwm=EVENT_HWM) if bus_endpoint else None

    def emit(self, event: str, **fields) -> None:
        if self.sock is None:
            return
        try:
            self.sock.send(pack({"event": event, "t": time.time(), "source": self.source, **fields}), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the bus is gone or overwhelmed; events are advisory, the work goes on

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def run_event_bus(args: dict, env: dict) -> None:
    """The bus process: PULL ``args['sink']`` -> PUB ``args['publish']``; history on ``args['control']``."""
    ctx = zmq.Context()
    sink = make_socket(ctx, zmq.PULL, bind=args["sink"], hwm=EVENT_HWM)
    pub = make_socket(ctx, zmq.PUB, bind=args["publish"], hwm=EVENT_HWM)
    control = make_socket(ctx, zmq.ROUTER, bind=args["control"])
    history: collections.deque[dict] = collections.deque(maxlen=int(args.get("history", HISTORY)))
    bad = BadFrames("event bus")
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)

    def recent(request: dict) -> list[dict]:
        limit = request.get("limit", 100)
        if not isinstance(limit, int) or limit < 0:
            raise Reply("bad_request", "limit must be a non-negative integer")
        prefix = request.get("prefix", "")
        matching = [e for e in history if str(e.get("event", "")).startswith(prefix)]
        return matching[-limit:] if limit else []

    handlers = {"ping": lambda r: "pong", "recent_events": recent,
                "status": lambda r: {"events": len(history), "bad_frames": bad.total,
                                     "bad_frames_by_kind": dict(bad.by_kind)}}
    poller = zmq.Poller()
    poller.register(sink, zmq.POLLIN)
    poller.register(control, zmq.POLLIN)
    notify_ready({"publish": args["publish"]})
    while not stop:
        for sock, _ in poller.poll(200):
            if sock is control:
                serve_one(control, handlers, bad)
                continue
            frame = sink.recv()
            try:
                event = unpack_map(frame, EVENT_MAX_BYTES)
                name = str(event["event"])
            except FrameError as exc:
                bad.note(exc.kind, exc.detail)
                continue
            except KeyError:
                bad.note("wrong_type", "an event needs an 'event' name")
                continue
            history.append(event)
            pub.send_multipart([name.encode(), frame])
    for sock in (sink, pub, control):
        sock.close()
    ctx.term()
    raise SystemExit(EXIT_SHUTDOWN)
