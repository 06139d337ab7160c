"""The end neuron's answers, straight back to each packet's origin (docs/protocol.md, "Returns").

Each packet's meta names its origin's return endpoint (a PULL the origin binds: MessengerIn, a stream,
an input extension, a probe). The end neuron pushes each origin one message per output bundle, a
msgpack array of the result maps of that origin's packets (``_answers``): an answer takes one hop from
the end of the network to the process waiting for it. (It took two through MessengerOut, which still
gets every output, to score the answers and publish them, off their path.) The sockets to the origins
are kept, the least recently used closed past ``MAX_ORIGINS``; a full one drops the message, counted.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import zmq

from ..runtime import BadFrames, make_socket, pack
from ._answers import answers_of

MAX_ORIGINS = 64
"""Return sockets kept open at once."""
_NOBLOCK = int(zmq.NOBLOCK)


class Returns:
    """Return sockets of the end neuron, one per origin endpoint; answers decoded as ``output_config`` (the
    topology's ``[output]``) says. ``counters`` (the neuron's) count what was ``returned``, what was dropped
    (``dropped_returns``: a full or unusable endpoint) and the answers to packets that named no origin
    (``no_origin``: dreams, an ``inject`` without one)."""

    def __init__(self, ctx: zmq.Context, counters: dict, bad: BadFrames, output_config: dict):
        self.ctx, self.counters, self.bad, self.output_config = ctx, counters, bad, output_config
        self.origins: OrderedDict[str, zmq.Socket] = OrderedDict()

    def send(self, packets: list, rows: list, outputs: np.ndarray, metas: list, losses: list, activation: str) -> None:
        """Each packet's answer (an output bundle's, ``rows`` each stacked in ``outputs``) to its origin: one
        message per origin, without waiting."""
        by_origin: dict[str, list[dict]] = {}
        for answer in answers_of(packets, rows, outputs, metas, losses, activation, self.output_config):
            origin = answer.meta.get("origin")
            if isinstance(origin, str):
                by_origin.setdefault(origin, []).append(answer.result)
            else:
                self.counters["no_origin"] += 1
        for origin, results in by_origin.items():
            sent = self._push(origin, pack(results))
            self.counters["returned" if sent else "dropped_returns"] += len(results)

    def _push(self, endpoint: str, message: bytes) -> bool:
        sock = self._socket(endpoint)
        if sock is None:
            return False
        try:
            sock.send(message, _NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _socket(self, endpoint: str) -> zmq.Socket | None:
        """The socket to ``endpoint``, connected at its first use; None for an endpoint ZeroMQ refuses."""
        sock = self.origins.pop(endpoint, None)
        if sock is None:
            try:
                sock = make_socket(self.ctx, zmq.PUSH, connect=endpoint)
            except zmq.ZMQError as exc:
                self.bad.note("bad_origin", f"cannot return to {endpoint[:200]!r}: {exc}")
                return None
            while len(self.origins) >= MAX_ORIGINS:
                self.origins.popitem(last=False)[1].close(linger=0)
        self.origins[endpoint] = sock
        return sock
