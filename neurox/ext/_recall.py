"""Awake replay: stored experience learnt beside the stream, in the stream's own packets.

The maintenance worker's hippocampus pushes a sample of what it keeps (each row as learnt, and as it
came before scaling) to MessengerIn every ``RECALL_EVERY_S`` (``recall_endpoint``, docs/protocol.md
"Recall"); MessengerIn's :class:`~neurox.ext._front.Front` appends ``awake_replay`` of those rows (and
their targets) per new row to every packet it passes on to learn from, as experience replay does
(scaled with the statistics of now where the row as it came is known), and marks the packet's meta
with ``recalled``, the count of rows appended at its end. The neurons learn from every row; the end
neuron and MessengerOut take the recalled rows off again (``neuron.forget_recalled``) before anything
is answered, scored or published, so they never reach a client, a prequential score or the
hippocampus as new experience.
"""
from __future__ import annotations

import numpy as np
import zmq

from ..brain import SleepConfig, recall_endpoint
from ..neuron import Topology
from ..runtime import FrameError, make_socket, unpack_map

RECALL_DRAIN = 8
"""Memories read at a time: only the newest is kept."""


class Recall:
    """MessengerIn's copy of the latest sample of the hippocampus, and how many rows per new row to recall
    (``per_row``: 0 until the maintenance worker says otherwise, so a network without one is unchanged)."""

    def __init__(self, width: int, seed: int = 0):
        self.width = width
        self.rows = np.zeros((0, width), dtype=np.float32)
        self.raw = self.rows
        """The same rows as they came, before scaling (NaN where not known)."""
        self.known = np.zeros(0, dtype=bool)
        self.targets: list = []
        self.per_row = 0
        self.rng = np.random.default_rng(seed)
        self.recalled = 0
        """Rows appended to packets so far (MessengerIn's ``metrics``)."""

    def take(self, frames: list[bytes]) -> None:
        """The newest valid memory among ``frames`` (each ``{"rows", "shape", "raw", "targets", "per_row"}``);
        FrameError if the newest does not fit (the one kept before stays)."""
        message = unpack_map(frames[-1])
        try:
            rows = np.frombuffer(message["rows"], "<f4").reshape(message["shape"])
            raw = np.frombuffer(message["raw"], "<f4").reshape(rows.shape) if "raw" in message else np.full_like(rows, np.nan)
            targets, per_row = list(message["targets"]), int(message["per_row"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FrameError("wrong_type", f"a recall message: {exc}") from None
        if rows.ndim != 2 or rows.shape[1] != self.width or len(targets) != len(rows) or per_row < 0:
            raise FrameError("wrong_shape", f"recall rows {rows.shape} with {len(targets)} targets, per_row {per_row}")
        self.rows, self.raw, self.targets, self.per_row = rows, raw, targets, per_row
        self.known = np.isfinite(raw).all(axis=1)

    def metrics(self) -> dict:
        """``recalled``: rows appended so far; ``recall_memory``: the stored samples it draws them from."""
        return {"recalled": self.recalled, "recall_memory": len(self.targets)}

    def add(self, rows: np.ndarray, meta: dict, scale=None) -> tuple[np.ndarray, dict]:
        """A learning packet's scaled ``rows`` and ``meta`` (its ``targets`` in the network's units) with
        ``per_row`` recalled rows per row appended, and ``recalled`` set; as they were if nothing is kept.
        ``scale`` puts a recalled row known as it came into the network's units as they are *now* (the
        statistics move as new classes come: a row scaled when it was learnt is no longer what the same
        input looks like); one not known so is recalled as it was learnt."""
        targets = meta.get("targets")
        if not self.per_row or not self.targets or not isinstance(targets, list):
            return rows, meta
        picks = self.rng.integers(0, len(self.targets), self.per_row * len(rows))
        recalled = self.rows[picks]
        known = self.known[picks]
        if scale is not None and known.any():
            recalled = recalled.copy()
            recalled[known] = scale(self.raw[picks[known]])
        self.recalled += len(picks)
        return (np.concatenate([rows, recalled]),
                {**meta, "targets": targets + [self.targets[i] for i in picks], "recalled": len(picks)})


def sends_recall(topology: Topology) -> bool:
    """Whether the network's maintenance worker pushes recall: ``[maintenance] awake_replay`` > 0, as the
    worker decides from the same topology file when it starts (a table it cannot read: assumed so)."""
    if topology.maintenance is None:
        return False
    try:
        return SleepConfig.from_table(topology.maintenance).awake_replay > 0
    except ValueError:
        return True


def listen_for_recall(extension, recall: Recall) -> None:
    """Bind MessengerIn's end of the recall link, if the topology's maintenance worker sends on it, and keep
    what arrives in ``recall`` (a bad message is counted among the extension's bad frames and changes
    nothing). None is bound otherwise: every socket MessengerIn polls costs it on every wake-up."""
    if not sends_recall(extension.topology):
        return
    sock = make_socket(extension.ctx, zmq.PULL, bind=recall_endpoint(extension.run_dir), hwm=2)

    def on_memory(frames: list[bytes]) -> None:
        try:
            recall.take(frames)
        except FrameError as exc:
            extension.bad.note(exc.kind, exc.detail)

    extension.watch(sock, on_memory, drain=RECALL_DRAIN)
