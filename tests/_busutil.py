"""Joining an event bus without missing what follows: a SUB joins a PUB late (its subscription travels
after the connection), so :func:`join_bus` pushes sync events into the bus's sink until one comes back."""
from __future__ import annotations

import itertools
import time

import zmq

from neurox.runtime import pack, unpack_map

SYNC = "test_sync"


def join_bus(sub: zmq.Socket, sink: str, timeout: float = 10.0) -> int:
    """Return once ``sub`` (connected to the bus, subscribed to everything) receives what is published:
    the token of the sync event that came back. Events received meanwhile are dropped."""
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(sink)
    deadline = time.monotonic() + timeout
    try:
        for token in itertools.count():
            push.send(pack({"event": SYNC, "token": token, "t": time.time(), "source": "tests"}))
            again = time.monotonic() + 0.02  # one more sync every 20 ms, however busy the bus is
            while (left := again - time.monotonic()) > 0 and sub.poll(max(1, int(left * 1000))):
                event = unpack_map(sub.recv_multipart()[1])
                if event["event"] == SYNC:
                    return event["token"]
            if time.monotonic() > deadline:
                raise AssertionError("the event bus did not echo a sync event")
    finally:
        push.close()
