"""An origin: anything that feeds packets into the start of a network and gets results back.

MessengerIn and the stream extension are origins. Each has a return endpoint of its own (a PULL that
MessengerOut pushes results to), PUSHes forward frames to every neuron of the first layer, and numbers
its packets in its own range so that packets of different origins never share an id.
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import zmq

from ..neuron import INPUT, Topology, encode_forward, inbox_endpoint
from ..neuron._sleep import experiences_endpoint
from ..runtime import FrameError, ipc_endpoint, make_socket, pack, unpack
from ._mixing import Mixer

ORIGIN_BITS = 40
"""Packet ids are ``origin_number << 40 | sequence``."""


class Origin:
    """``remember``: also push every sample sent to learn from to the network's hippocampus, if it has
    one (a ``[maintenance]`` table); dreams, replayed from it, are not remembered again."""

    def __init__(self, ctx: zmq.Context, run_dir: str, topology: Topology, name: str, hwm: int = 10000,
                 remember: bool = True):
        self.ctx = ctx
        self.hippocampus = (make_socket(ctx, zmq.PUSH, connect=experiences_endpoint(run_dir), hwm=hwm)
                            if remember and topology.maintenance is not None else None)
        self.forgotten = 0
        """Samples the hippocampus could not take (its queue was full): not remembered, still learnt."""
        self.name = name
        self.return_endpoint = ipc_endpoint(run_dir, f"{name}.{os.getpid()}.ret")
        self.returns = make_socket(ctx, zmq.PULL, bind=self.return_endpoint, hwm=hwm)
        self.starts = [make_socket(ctx, zmq.PUSH, connect=inbox_endpoint(run_dir, n), hwm=hwm)
                       for n in topology.layers[0].neurons]
        self.mixer = Mixer(ctx, run_dir, topology, name)
        number = int.from_bytes(os.urandom(2), "big") | 1
        self._ids = itertools.count(number << ORIGIN_BITS)

    def send(self, rows: np.ndarray, targets=None, learn: bool = False, block: bool = True, tag=None) -> int:
        """Push one packet of rows (with targets when learning); returns its packet id.

        With ``block=False`` a full queue towards the first layer raises ``zmq.Again`` instead of waiting.
        ``tag`` (e.g. a request's message_hash_id) travels with the packet to the output extensions, and so
        does this origin's ``name`` (as ``source``).
        """
        packet = next(self._ids)
        rows = self.mixer.apply(rows)  # the samples of mixing inputs, in their positions
        meta = {"origin": self.return_endpoint, "source": self.name}
        if learn and targets is not None:
            meta["targets"] = targets
        if tag is not None:
            meta["tag"] = tag
        frame = encode_forward(INPUT, [packet], [np.ascontiguousarray(rows, dtype="<f4")], [learn], [pack(meta)])
        for sock in self.starts:
            sock.send(frame, 0 if block else zmq.NOBLOCK)
        if self.hippocampus is not None and learn and targets is not None:
            self._remember(rows, targets)
        return packet

    def _remember(self, rows: np.ndarray, targets) -> None:
        rows = np.ascontiguousarray(rows, dtype="<f4").reshape(len(targets), -1)
        try:
            self.hippocampus.send(pack({"rows": rows.tobytes(), "shape": list(rows.shape), "targets": list(targets)}),
                                  zmq.NOBLOCK)
        except zmq.Again:
            self.forgotten += len(targets)

    def receive(self, flags: int = 0) -> list[dict]:
        """The result maps of one return message from MessengerOut (``zmq.NOBLOCK`` raises zmq.Again if none)."""
        results = unpack(self.returns.recv(flags))
        if not isinstance(results, list):
            raise FrameError("wrong_type", "a return message is a list of result maps")
        return [r for r in results if isinstance(r, dict)]

    def close(self) -> None:
        for sock in (self.returns, *self.starts):
            sock.close(linger=0)
        self.mixer.close()
        if self.hippocampus is not None:
            self.hippocampus.close(linger=0)
