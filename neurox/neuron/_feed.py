"""Packets pushed straight into the first layer of a data plane, rows already scaled.

What a *direct* origin does (``neurox.ext``'s MessengerIn) without the rest of an origin: no return
socket, no mixing, no hippocampus. The maintenance pool dreams through its twins this way -- its rows
come from the hippocampus, scaled when they were learnt -- so ``brain`` needs nothing from ``ext``.
"""
from __future__ import annotations

import itertools

import numpy as np
import zmq

from ..runtime import make_socket, pack
from ._endpoints import inbox_endpoint
from ._frames import encode_forward
from ._topology import INPUT, Topology


class FirstLayerFeed:
    """PUSH sockets to every first-layer neuron of the plane in ``plane_dir``; ``source`` names the
    packets' origin in their meta (the output side reads it, as it reads an origin's name)."""

    def __init__(self, ctx: zmq.Context, plane_dir: str, topology: Topology, source: str, hwm: int = 10000):
        self.source = source
        self.starts = {n: make_socket(ctx, zmq.PUSH, connect=inbox_endpoint(plane_dir, n), hwm=hwm)
                       for n in topology.layers[0].neurons}
        self._ids = itertools.count(1)  # the plane's only origin: its packet ids need no range of their own

    def send(self, rows: np.ndarray, targets=None, learn: bool = False) -> tuple[int, list[str]]:
        """One packet of rows (with its targets when it is learnt from) to every first-layer neuron, never
        waiting; its packet id (the network's end gives it back with the packet's outputs) and the neurons
        whose queue is full (``hwm`` packets behind: gone, or stalled), skipped, for the caller to count
        and report. Waiting would hold the sender (the maintenance worker) as long as such a twin is away;
        a packet a first-layer neuron misses is, for the layer above, what a packet of a dead neuron is (a
        gap its joins fill), and the neuron's next packets reach it again once it reads (a restarted twin
        drains what its queue kept)."""
        meta = {"source": self.source, **({"targets": targets} if learn and targets is not None else {})}
        packet = next(self._ids)
        frame = encode_forward(INPUT, [packet], [np.ascontiguousarray(rows, dtype="<f4")], [learn], [pack(meta)])
        return packet, [neuron for neuron, sock in self.starts.items() if not _send_now(sock, frame)]

    def close(self) -> None:
        for sock in self.starts.values():
            sock.close(linger=0)


def _send_now(sock: zmq.Socket, frame: bytes) -> bool:
    """Send without waiting; False if the queue is full. A socket that says full is asked once more after
    it has taken in its peer's news (``poll``): a NOBLOCK send reads that news at most once a millisecond,
    so a queue its reader drained meanwhile can still look full to it."""
    for _ in range(2):
        try:
            sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            if not sock.poll(0, zmq.POLLOUT):
                return False
    return False
