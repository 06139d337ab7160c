"""The console of ``neurox run``: a progress line every second that follows the live shape of the network,
and a line for each reshape as it happens.

Everything comes from the event bus (no neuron is polled): deaths and replacements say how many neurons
are alive, and the reshaper's ``reshaped`` events (and the self-reshaper's ``self_reshaped``) say which
neurons and layers there are now. :class:`LiveShape` is the bookkeeping, a pure function of the events;
:class:`Console` reads the bus and prints.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import zmq

from ..runtime import FrameError, unpack_map
from ..tui import describe_reshape, describe_self_reshape, shape_text

TOPICS = (b"child_exited", b"child_restarted", b"reshaped", b"self_reshaped", b"intensity_exceeded")
FOLLOW_EVERY_S = 0.1
"""The bus is read at most this often (the stream's loop asks far more often), soon enough for a person."""


@dataclass
class LiveShape:
    """The network's layers (in order, each with its neurons), the neurons down and the restarts so far."""

    layers: dict[str, list[str]]
    down: set[str] = field(default_factory=set)
    restarts: int = 0

    @classmethod
    def of(cls, topology) -> "LiveShape":
        return cls({layer.name: list(layer.neurons) for layer in topology.layers})

    @property
    def neurons(self) -> int:
        return sum(len(neurons) for neurons in self.layers.values())

    @property
    def alive(self) -> int:
        return self.neurons - len(self.down)

    @property
    def shape(self) -> str:
        return shape_text([len(neurons) for neurons in self.layers.values()])

    def apply(self, topic: str, event: dict) -> str | None:
        """Take one event in; the line to print for it, if it is one a person wants to see at once."""
        ident = str(event.get("id", ""))
        if topic == "child_exited":
            self.down.update(self.layers.get(ident, [ident] if self._known(ident) else []))
        elif topic == "child_restarted":
            self.restarts += 1
            self.down.difference_update(self.layers.get(ident, [ident]))
        elif topic == "reshaped":
            self._reshaped(str(event.get("op")), event.get("request") or {}, event.get("result"))
            return f"reshaped: {describe_reshape(str(event.get('op')), event.get('result'))} (now {self.shape})"
        elif topic == "self_reshaped":
            return describe_self_reshape(event)  # its change itself arrives as a `reshaped` event too
        return None

    def _known(self, neuron: str) -> bool:
        return any(neuron in neurons for neurons in self.layers.values())

    def _reshaped(self, op: str, request: dict, result) -> None:
        r = result if isinstance(result, dict) else {}
        if op == "add_neuron" and r.get("layer") in self.layers:
            self.layers[r["layer"]].append(str(r.get("id")))
        elif op == "remove_neuron" and r.get("layer") in self.layers:
            self.layers[r["layer"]] = [n for n in self.layers[r["layer"]] if n != r.get("id")]
            self.down.discard(r.get("id"))
        elif op == "add_layer" and "layer" in r:
            names = list(self.layers)
            at = names.index(request["after"]) + 1 if request.get("after") in names else len(names) - 1
            names.insert(at, r["layer"])
            self.layers = {name: self.layers.get(name) or [str(n) for n in r.get("neurons") or []] for name in names}
        elif op == "remove_layer":
            self.down.difference_update(self.layers.pop(r.get("layer"), []))


class Console:
    """Prints reshapes as they happen (:meth:`follow`) and the progress line (:meth:`report`)."""

    def __init__(self, ctx: zmq.Context, events: str, topology, out=None):
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        for topic in TOPICS:
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.sub.connect(events)
        self.live = LiveShape.of(topology)
        self.gave_up: dict | None = None
        """The last ``intensity_exceeded`` event: which supervisor gave up, and at what."""
        self.out = out or sys.stdout
        self.next_follow = 0.0

    def follow(self, now: float | None = None) -> None:
        """Read every event waiting on the bus (at most every ``FOLLOW_EVERY_S``); print a line for each reshape."""
        now = time.monotonic() if now is None else now
        if now < self.next_follow:
            return
        self.next_follow = now + FOLLOW_EVERY_S
        while self.sub.poll(0):
            topic, body = self.sub.recv_multipart()
            try:
                event = unpack_map(body)
            except FrameError:
                continue  # the bus forwards what publishers send; a bad one is not the console's to fix
            if topic == b"intensity_exceeded":
                self.gave_up = event
                continue
            line = self.live.apply(topic.decode(errors="replace"), event)
            if line:
                print(line, file=self.out, flush=True)

    def report(self, p) -> None:
        """The progress line of a ``StreamProgress``, with the shape as it is now."""
        self.follow(now=float("inf"))
        live = self.live
        print(f"epoch {p.epoch + 1}  samples {p.answered:>8,}  {score(p)}  {p.samples_per_s:,.0f} samples/s  "
              f"neurons {live.alive}/{live.neurons} alive ({live.shape})  restarts {live.restarts}  lost {p.lost}",
              file=self.out, flush=True)

    def close(self) -> None:
        self.sub.close()


def score(p) -> str:
    """How well it learns so far: prequential accuracy, or RMSE and MAE for a regression, or the loss."""
    if p.accuracy is not None:
        return f"acc {p.accuracy:.3f} (last 1000: {p.rolling_accuracy:.3f})"
    if p.rmse is not None:
        return f"RMSE {p.rmse:.4g} (last 1000: {p.rolling_rmse:.4g})  MAE {p.mae:.4g}"
    return f"loss {p.mean_loss:.4f}" if p.mean_loss is not None else "no answers yet"
