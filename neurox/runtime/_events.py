"""Lifecycle events: every process PUSHes them to one event bus per network, which PUBlishes them.

Publishers PUSH (not PUB) so an event sent in the first millisecond of a process's life is queued
until the connection exists instead of being dropped by a PUB with no subscriber yet. The bus
republishes each event as two frames, ``[topic, msgpack map]`` with the topic the event's name,
so a subscriber can filter by prefix, and keeps the most recent events for late joiners (``_bus``).
"""
from __future__ import annotations

import time

import zmq

from ._sockets import EVENT_HWM, make_socket
from ._wire import pack

EVENT_MAX_BYTES = 256 * 1024


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
