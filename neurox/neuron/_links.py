"""A neuron's links: one record per neighbour, in the order its weights and frames use.

An *input* link (an upstream neighbour, or the pseudo-node ``input`` where MessengerIn attaches) has
the width of what it sends, its slot in a join (its index among the inputs), its columns in the
joined input ``x`` (``offset``), and the PUSH socket this neuron sends it gradients on (none for
``input``). An *output* link (a downstream neighbour, or MessengerOut as ``output``) has its slot in
a gradient join and the PUSH socket forward frames go on. Sockets come from a factory, so the
bookkeeping is testable without ZeroMQ; every send goes through :meth:`Links.send`, which counts
what a full queue drops and mirrors the frame on the tap when one is on (``neurox probe tap``).

A neuron's links are connected at its first send, not at its start: making a socket and connecting
it cost a neuron 0.4 ms each on a small VM, about half of its CPU from fork to ready with six
neighbours, and a thousand-neuron network starts before any sample flows. The first send connects
every link at once, so that the way back for the gradients is open (its handshakes done) by the time
they come; a link added later connects at its own first send. A PUSH socket queues what is sent from
its connect on (no ``IMMEDIATE``), so a first send is never lost to the lateness.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import zmq

from ..runtime import FrameError, Reply
from ._frames import encode_gradient
from ._ops import RemoveLink
from ._topology import INPUT, OUTPUT


FORMER = 64
"""Neighbours unlinked lately that a neuron remembers (their frames still in flight are late, not bad)."""
FORMER_LINK = "former_link"
"""The FrameError kind of a frame from a neighbour unlinked lately: the pipeline counts it ``late``."""


class Link:
    """One neighbour: its id, width (inputs), slot, columns in ``x`` (inputs), socket and tap topic.
    ``connect()`` makes the socket on first use (None: a link that sends nothing, MessengerIn's)."""

    __slots__ = ("peer", "width", "slot", "offset", "_socket", "_connect", "topic")

    def __init__(self, peer: str, width: int, connect: Callable[[], object] | None, topic: bytes):
        self.peer, self.width, self._connect, self.topic = peer, width, connect, topic
        self._socket = None
        self.slot = self.offset = 0

    @property
    def socket(self):
        """The PUSH socket to the neighbour (see :meth:`open`)."""
        return self.open()

    def open(self):
        """The PUSH socket to the neighbour, made and connected now if it was not yet; None if the link
        sends nothing."""
        if self._socket is None and self._connect is not None:
            self._socket = self._connect()
        return self._socket

    def close(self, linger: int | None = None) -> None:
        """Close the socket if it was ever made."""
        if self._socket is not None:
            self._socket.close(linger=linger)
            self._socket = None


class Links:
    """The inputs and outputs of neuron ``owner``. ``connect(peer)`` gives a PUSH socket to ``peer``'s inbox;
    ``counters`` is the neuron's counters (``dropped_sends`` is counted here)."""

    def __init__(self, owner: str, connect: Callable[[str], object], counters: dict):
        self.owner = owner
        self.connect = connect
        self.counters = counters
        self.inputs: list[Link] = []
        self.outputs: list[Link] = []
        self.input_of: dict[str, Link] = {}
        self.output_of: dict[str, Link] = {}
        self.fan_in = 0
        self.tap = None
        self.former: dict[str, None] = {}
        """Neighbours unlinked lately (the newest ``FORMER`` of them, oldest first): what they had already
        sent when the link went is late, not bad."""

    # -- what the neighbours are ----------------------------------------------------------------
    @property
    def layout(self) -> list[tuple[str, int]]:
        """``(peer, width)`` of every input, in the order of the rows of the weights."""
        return [(link.peer, link.width) for link in self.inputs]

    @property
    def is_end(self) -> bool:
        return OUTPUT in self.output_of

    def status(self) -> dict:
        return {"inputs": [link.peer for link in self.inputs], "outputs": [link.peer for link in self.outputs]}

    def input(self, peer: str) -> Link:
        """The input link from ``peer``; FrameError ``unknown_source`` if there is none (``former_link``
        if there was one lately)."""
        link = self.input_of.get(peer)
        if link is None:
            raise self._unknown(peer, "an input")
        return link

    def output(self, peer: str) -> Link:
        """The output link to ``peer``; FrameError ``unknown_source`` if there is none (``former_link``
        if there was one lately)."""
        link = self.output_of.get(peer)
        if link is None:
            raise self._unknown(peer, "an output")
        return link

    def _unknown(self, peer: str, what: str) -> FrameError:
        if peer in self.former:
            return FrameError(FORMER_LINK, f"{peer!r} is no longer {what} of {self.owner}")
        return FrameError("unknown_source", f"{peer!r} is not {what} of {self.owner}")

    def _unlinked(self, peer: str) -> None:
        self.former.pop(peer, None)
        self.former[peer] = None
        if len(self.former) > FORMER:
            del self.former[next(iter(self.former))]

    def set_inputs(self, layout: list[tuple[str, int]]) -> None:
        """The inputs as they are now, in order: kept links keep their socket, new ones connect (on first use), gone ones close."""
        old = self.input_of
        self.inputs = []
        for peer, width in layout:
            link = old.get(peer)
            if link is None:
                link = Link(peer, int(width), None if peer == INPUT else partial(self.connect, peer), f"grad>{peer}".encode())
            link.width = int(width)
            self.inputs.append(link)
        self.input_of = {link.peer: link for link in self.inputs}
        for peer, link in old.items():
            if peer not in self.input_of:
                link.close()
                self._unlinked(peer)
        offset = 0
        for slot, link in enumerate(self.inputs):
            link.slot, link.offset = slot, offset
            offset += link.width
        self.fan_in = offset

    def add_output(self, peer: str) -> None:
        self.outputs.append(Link(peer, 0, partial(self.connect, peer), peer.encode()))
        self._renumber_outputs()

    def remove_output(self, peer: str) -> None:
        self.output_of[peer].close()
        self._unlinked(peer)
        self.outputs = [link for link in self.outputs if link.peer != peer]
        self._renumber_outputs()

    def _renumber_outputs(self) -> None:
        for slot, link in enumerate(self.outputs):
            link.slot = slot
        self.output_of = {link.peer: link for link in self.outputs}

    # -- control requests (add_link / remove_link) ----------------------------------------------
    def check_change(self, request: RemoveLink, adding: bool) -> tuple[str, str]:
        """``(direction, peer)`` of a valid ``add_link``/``remove_link`` request (``_ops``), or the Reply refusing it."""
        direction, peer = request.direction, request.peer
        links = self.input_of if direction == "in" else self.output_of
        arrow = f"{peer} -> {self.owner}" if direction == "in" else f"{self.owner} -> {peer}"
        if adding and peer in links:
            raise Reply("already_linked", f"{arrow} exists")
        if adding and direction == "in" and request.width is None:
            raise Reply("bad_request", "add_link: an input link needs width, the peer's width (int > 0)")
        if not adding and peer not in links:
            raise Reply("not_found", f"no link {arrow}")
        if not adding and len(links) == 1:
            raise Reply("last_link", f"{self.owner} would have no {'input' if direction == 'in' else 'output'} left")
        return direction, peer

    # -- sending ----------------------------------------------------------------------------------
    def send(self, link: Link, frame: bytes) -> None:
        """Send without blocking: a full queue drops the frame (counted ``dropped_sends``)."""
        sock = link._socket
        if sock is None:
            self._connect_all()
            sock = link._socket
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.counters["dropped_sends"] += 1
        if self.tap is not None:
            try:  # a mirror never slows the neuron down: a slow tap loses frames, not the neuron
                self.tap.send_multipart([link.topic, frame], zmq.NOBLOCK)
            except zmq.Again:
                pass

    def _connect_all(self) -> None:
        for link in (*self.inputs, *self.outputs):
            link.open()

    def send_gradients(self, packets: list, rows: list, dx: np.ndarray) -> None:
        """dLoss/dx of packets (their rows stacked in ``dx``, ``rows`` each), one bundle per upstream neuron:
        its columns."""
        for link in self.inputs:
            if link._connect is not None:
                self.send(link, encode_gradient(self.owner, packets, rows, dx[:, link.offset:link.offset + link.width]))

    def set_tap(self, tap) -> None:
        """Mirror every frame sent on ``tap`` (a PUB socket; None: stop), topic the link's."""
        if self.tap is not None and tap is not self.tap:
            self.tap.close()
        self.tap = tap

    def close(self, linger: int | None) -> None:
        for link in (*self.inputs, *self.outputs):
            link.close(linger)
        if self.tap is not None:
            self.tap.close()


def relayout(weights: np.ndarray, old: list[tuple[str, int]], new: list[tuple[str, int]],
             fresh: Callable[[int], np.ndarray]) -> np.ndarray:
    """Weights laid out for the inputs ``old`` re-laid for ``new``: the rows of each link kept (same peer,
    same width), ``fresh(width)`` rows for a new or resized link; a removed link's rows are dropped."""
    if old == new and weights.shape[0] == sum(w for _, w in new):
        return weights.astype(np.float32)
    offsets, at = {}, 0
    for peer, width in old:
        offsets[peer] = (at, int(width))
        at += int(width)
    blocks = []
    for peer, width in new:
        start, old_width = offsets.get(peer, (0, -1))
        if old_width == width and start + width <= weights.shape[0]:
            blocks.append(weights[start:start + width])
        else:
            blocks.append(fresh(width))
    return np.concatenate(blocks).astype(np.float32)
