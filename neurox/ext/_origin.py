"""An origin: anything that feeds packets into the start of a network and gets results back.

MessengerIn and the stream extension are origins. Each has a return endpoint of its own (a PULL that
MessengerOut pushes results to), PUSHes forward frames towards the first layer, and numbers its packets
in its own range so that packets of different origins never share an id. Every origin but MessengerIn
sends them *through* MessengerIn (``feed_endpoint``), which scales them all alike (``_front``) and pushes
them on to every neuron of the first layer; a ``direct`` origin (MessengerIn, the dreams of the pool,
whose rows are already scaled) pushes to those neurons itself.
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import zmq

from ..neuron import INPUT, Topology, encode_forward, inbox_endpoint
from ..neuron import experiences_endpoint
from ..runtime import FrameError, ipc_endpoint, make_socket, pack, unpack
from ._front import feed_endpoint
from ._mixing import Mixer

ORIGIN_BITS = 40
"""Packet ids are ``origin_number << 40 | sequence``."""
_F4, _NOBLOCK = np.dtype("<f4"), int(zmq.NOBLOCK)
_ARRAY_HEADS = {0xdc: 3, 0xdd: 5}
"""msgpack's array16 and array32 and their headers' length (a fixarray, 0x90-0x9f, has one byte)."""
_MAP_HEADS = frozenset([*range(0x80, 0x90), 0xde, 0xdf])
"""The first byte of a msgpack map: fixmap, map16, map32."""


class Origin:
    """``remember``: a direct origin also pushes every sample sent to learn from to the network's
    hippocampus, if it has one (a ``[maintenance]`` table), scaled as the network learnt it; dreams,
    replayed from it, are not remembered again."""

    def __init__(self, ctx: zmq.Context, run_dir: str, topology: Topology, name: str, hwm: int = 10000,
                 remember: bool = True, direct: bool = False):
        self.ctx = ctx
        self.hippocampus = (make_socket(ctx, zmq.PUSH, connect=experiences_endpoint(run_dir), hwm=hwm)
                            if remember and direct and topology.maintenance is not None else None)
        self.forgotten = 0
        """Samples the hippocampus could not take (its queue was full): not remembered, still learnt."""
        self.name = name
        self.return_endpoint = ipc_endpoint(run_dir, f"{name}.{os.getpid()}.ret")
        self.returns = make_socket(ctx, zmq.PULL, bind=self.return_endpoint, hwm=hwm)
        ends = [inbox_endpoint(run_dir, n) for n in topology.layers[0].neurons] if direct else [
            feed_endpoint(run_dir)]
        self.starts = [make_socket(ctx, zmq.PUSH, connect=end, hwm=hwm) for end in ends]
        self.mixer = Mixer(ctx, run_dir, topology, name)
        number = int.from_bytes(os.urandom(2), "big") | 1
        self._ids = itertools.count(number << ORIGIN_BITS)
        self._base = {"origin": self.return_endpoint, "source": self.name}
        """What every packet's meta says of its origin."""

    def send(self, rows: np.ndarray, targets=None, learn: bool = False, block: bool = True, tag=None,
             meta: dict | None = None) -> int:
        """Push one packet of rows (with targets when learning); returns its packet id.

        With ``block=False`` a full queue towards the first layer raises ``zmq.Again`` instead of waiting.
        ``tag`` (e.g. a request's message_hash_id) travels with the packet to the output extensions, and so
        does this origin's ``name`` (as ``source``); ``meta`` adds to the packet's meta.
        """
        return self.send_bundle([rows], [targets], learn, block, meta if tag is None else {**(meta or {}), "tag": tag})[0]

    def send_bundle(self, rows: list[np.ndarray], targets: list, learn: bool = False, block: bool = True,
                    meta: dict | None = None, tags: list | None = None) -> list[int]:
        """Push several packets (``rows[i]`` with ``targets[i]``, and ``tags[i]`` if given and not None) in one
        frame, as a neuron sends a bundle: one message for what was ready at once (the first layer computes
        them in one go); their packet ids. ``zmq.Again`` (with ``block=False``) sends none of them."""
        packets = [next(self._ids) for _ in rows]
        blocks = [np.ascontiguousarray(self.mixer.apply(r), dtype=_F4) for r in rows]  # mixing inputs in place
        base = {**meta, **self._base} if meta else self._base
        bases = [base if tag is None else {**base, "tag": tag} for tag in tags] if tags else [base] * len(rows)
        metas = [pack({**b, "targets": t} if learn and t is not None else b) for b, t in zip(bases, targets)]
        self._push(encode_forward(INPUT, packets, blocks, [learn] * len(rows), metas), block)
        if self.hippocampus is not None and learn:
            for block, t in zip(blocks, targets):
                if t is not None:
                    self._remember(block, t)
        return packets

    def _push(self, frame: bytes, block: bool) -> None:
        flags = 0 if block else _NOBLOCK
        for sock in self.starts:
            sock.send(frame, flags)

    def forward(self, frame: bytes, learnt: list) -> bool:
        """Push another origin's forward frame on (MessengerIn), remembering the (rows, targets, rows as
        they came) it learns from; False if the first layer is not taking more (the frame is dropped: its origin counts it lost)."""
        try:
            for sock in self.starts:
                sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        if self.hippocampus is not None:
            for rows, targets, *raw in learnt:
                self._remember(rows, targets, *raw)
        return True

    def _remember(self, rows: np.ndarray, targets, raw: np.ndarray | None = None) -> None:
        """``rows`` as the network learnt them, and (``raw``) as they came, for awake replay to scale anew."""
        rows = np.ascontiguousarray(rows, dtype="<f4").reshape(len(targets), -1)
        message = {"rows": rows.tobytes(), "shape": list(rows.shape), "targets": list(targets)}
        if raw is not None:
            message["raw"] = np.ascontiguousarray(raw, dtype="<f4").tobytes()
        try:
            self.hippocampus.send(pack(message), zmq.NOBLOCK)
        except zmq.Again:
            self.forgotten += len(targets)

    def receive(self, flags: int = 0) -> list[dict]:
        """The result maps of one return message from MessengerOut (``zmq.NOBLOCK`` raises zmq.Again if none)."""
        return results_of(self.returns.recv(flags))

    def close(self) -> None:
        for sock in (self.returns, *self.starts):
            sock.close(linger=0)
        self.mixer.close()
        if self.hippocampus is not None:
            self.hippocampus.close(linger=0)


def is_return(message: bytes) -> bool:
    """Whether a message is a return message -- a msgpack array whose first element is a (result) map --
    rather than a forward frame (whose first element is its kind, an int) or anything else: MessengerIn
    takes both on one PULL. Its first bytes tell: an array's header, then a map's."""
    if not message:
        return False
    skip = 1 if 0x90 <= message[0] <= 0x9f else _ARRAY_HEADS.get(message[0])
    return skip is not None and len(message) > skip and message[skip] in _MAP_HEADS


def results_of(frame: bytes) -> list[dict]:
    """The result maps of one return message from MessengerOut; FrameError if it is not a list of them."""
    results = unpack(frame)
    if not isinstance(results, list):
        raise FrameError("wrong_type", "a return message is a list of result maps")
    return [r for r in results if isinstance(r, dict)]
