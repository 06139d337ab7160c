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
        self.starts = [make_socket(ctx, zmq.PUSH, connect=inbox_endpoint(plane_dir, n), hwm=hwm)
                       for n in topology.layers[0].neurons]
        self._ids = itertools.count(1)  # the plane's only origin: its packet ids need no range of their own

    def send(self, rows: np.ndarray, targets=None, learn: bool = False) -> int:
        """One packet of rows (with its targets when it is learnt from), to every first-layer neuron; its id."""
        packet = next(self._ids)
        meta = {"source": self.source, **({"targets": targets} if learn and targets is not None else {})}
        frame = encode_forward(INPUT, [packet], [np.ascontiguousarray(rows, dtype="<f4")], [learn], [pack(meta)])
        for sock in self.starts:
            sock.send(frame)
        return packet

    def close(self) -> None:
        for sock in self.starts:
            sock.close(linger=0)
