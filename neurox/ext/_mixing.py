"""Mixing: an input extension's samples written into the main input, at declared positions.

By default (``join = "beside"``) an input extension's samples are packets of their own, beside the
other inputs'. With ``join = "mix"`` and ``positions = [first, end]`` its samples are ``end - first``
values wide (an eye's frames are resized to fit) and are not sent as packets: the extension
publishes each one (:class:`MixSource`, a PUB at ``ipc://RUN_DIR/NAME.mix``) and every origin of the
network -- MessengerIn, the stream of ``neurox run``, the other inputs -- writes the latest one into
positions ``first`` .. ``end - 1`` of every row it sends (:class:`Mixer`). What the main input holds
there is replaced; until a mixing source has published its first sample, those positions keep the
main input's own values. The latest sample is published again every ``REPEAT_S``, so an origin
that (re)starts later has it within that time. Targets of mixed samples are not used: what is
learnt is the main input's target, of the mixed row.
"""
from __future__ import annotations


import numpy as np
import zmq

from ..neuron import Topology
from ..runtime import ipc_endpoint, make_socket
from ._settings import ExtensionError, Setting

JOIN_SETTINGS = {
    "join": Setting("'beside': the samples go into the network as packets of their own; 'mix': each is written "
                    "into every packet of the other inputs, at positions", "beside", choices=("beside", "mix")),
    "positions": Setting("with join = 'mix': [first, end], the part of the start node's input the samples fill "
                         "(first .. end - 1)", None, "ints"),
}
"""The settings every SampleInput has for how its samples join the network's input."""
REPEAT_S = 1.0


def mix_endpoint(run_dir: str, name: str) -> str:
    return ipc_endpoint(run_dir, f"{name}.mix")


def check_join(settings: dict, name: str, topology: Topology) -> dict:
    """``join`` and ``positions`` checked against the start node's width; ExtensionError naming them."""
    positions = settings.get("positions")
    if settings.get("join") != "mix":
        if positions is not None:
            raise ExtensionError(f"extension {name!r}: 'positions' is for join = \"mix\"")
        return settings
    width = topology.input_width
    if positions is None or len(positions) != 2 or not 0 <= positions[0] < positions[1] <= width:
        raise ExtensionError(f"extension {name!r}: join = \"mix\" needs positions = [first, end] with "
                             f"0 <= first < end <= {width} (the start node's input_width); got {positions!r}")
    return settings


def joined_width(settings: dict, topology: Topology) -> int:
    """How many values an input's samples have: the start node's width, or the positions they are mixed into."""
    if settings.get("join") == "mix" and settings.get("positions"):
        first, end = settings["positions"]
        return end - first
    return topology.input_width


class MixSource:
    """The publishing end, in a ``join = "mix"`` SampleInput: its queue's samples are published, at
    most ``rate`` a second (0: as they come), instead of being sent as packets."""

    def __init__(self, ctx: zmq.Context, run_dir: str, name: str, rate: float):
        self.pub = make_socket(ctx, zmq.PUB, bind=mix_endpoint(run_dir, name), hwm=16, linger_ms=0)
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = 0.0
        self.latest: bytes | None = None
        self.published_at = 0.0

    def pump(self, extension, now: float) -> float | None:
        """Publish what ``extension`` (a SampleInput) has queued; seconds until it wants to run again."""
        while extension.pending and now >= self.next_at:
            sample = extension.pending.popleft()
            self.latest = np.ascontiguousarray(sample.row, dtype="<f4").tobytes()
            self._publish(now)
            extension.count("sent")
            extension.count("mixed")
            self.next_at = now + self.interval
        if self.latest is not None and now - self.published_at >= REPEAT_S:
            self._publish(now)
        waits = [REPEAT_S - (now - self.published_at)] if self.latest is not None else []
        if extension.pending:
            waits.append(self.next_at - now)
        return max(0.0, min(waits)) if waits else None

    def _publish(self, now: float) -> None:
        try:
            self.pub.send(self.latest, zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB drops for a slow subscriber; the next sample (or the repeat) replaces it anyway
        self.published_at = now

    def close(self) -> None:
        self.pub.close()


class Mixer:
    """The receiving end, in every origin: the latest sample of each mixing input of the topology (but
    the origin itself) written into the rows the origin sends."""

    def __init__(self, ctx: zmq.Context, run_dir: str, topology: Topology, name: str):
        self.sources = []
        for line in topology.extensions:
            positions = line.get("positions")
            if line.get("join") != "mix" or line.get("name") == name or not positions or len(positions) != 2:
                continue
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.CONFLATE, 1)  # only the latest sample matters
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(mix_endpoint(run_dir, line["name"]))
            self.sources.append([sub, int(positions[0]), int(positions[1]), None])

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` with every mixing input's latest sample in its positions (a copy; ``rows`` itself while
        no mixing input has published anything)."""
        if not self.sources:
            return rows
        for source in self.sources:
            while True:
                try:
                    latest = np.frombuffer(source[0].recv(zmq.NOBLOCK), dtype="<f4")
                except zmq.Again:
                    break
                if latest.size == source[2] - source[1]:
                    source[3] = latest
        ready = [source for source in self.sources if source[3] is not None]
        if not ready:
            return rows
        rows = np.array(rows, dtype=np.float32)
        for _, first, end, latest in ready:
            rows.reshape(-1, rows.shape[-1])[:, first:end] = latest
        return rows

    def close(self) -> None:
        for sub, *_ in self.sources:
            sub.close()
