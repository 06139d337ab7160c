"""Joining the parts of each packet that a neuron gets from several neighbours, with a deadline.

A neuron with several inputs receives one forward part per input for each packet id; one with
several outputs receives one gradient per output. :class:`Joins` keeps the parts received so far
in slot order (a link's slot, ``_links``), says when a packet is complete, takes out the joins whose
first part is older than the deadline (they go on without what is missing, which is counted), and
-- for forward parts -- remembers the ids completed lately, so that a part arriving after its packet
went on is recognised as ``late`` and dropped instead of starting a join that could never complete.
"""
from __future__ import annotations

from collections import OrderedDict
from itertools import repeat

import numpy as np

from ._frames import slices

MAX_PENDING = 4096
"""Joins open at once; past this the oldest goes on with what it has."""
RECENT_DONE = 8192
"""Completed packet ids remembered so that a late part is recognised and dropped, not re-joined."""


class Join:
    """The parts of one packet received so far, in a fixed slot order, and what came with the first."""

    __slots__ = ("parts", "count", "started", "learn", "meta")

    def __init__(self, slots: int, started: float, learn: bool, meta: bytes):
        self.parts: list = [None] * slots
        self.count = 0
        self.started = started
        self.learn = learn
        self.meta = meta


class Joins:
    """Open joins over one part per slot, oldest first; what they give is ``(packet, value, learn, meta)``.

    ``widths`` has one entry per slot (the width of its part). ``combine`` says what a completed join's
    value is: ``concat`` -- the parts side by side, zeros for a missing one (the input ``x`` of a
    forward pass) -- or ``sum`` -- the sum of the parts present (the gradient of a packet's outputs).
    ``counters`` is the neuron's; ``missed`` names the counter of parts that did not come before their
    packet went on (``missed_inputs``, ``missed_gradients``). With ``remember`` > 0 the last that many
    completed ids are kept, and a part for one of them is counted ``late`` and dropped.
    """

    def __init__(self, widths: list[int], counters: dict, missed: str, combine: str, remember: int = 0,
                 limit: int = MAX_PENDING):
        self.widths = list(widths)
        self.counters = counters
        self.missed = missed
        self.concat = {"concat": True, "sum": False}[combine]
        self.remember = remember
        self.limit = limit
        self.pending: OrderedDict[int, Join] = OrderedDict()
        self.done: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pending)

    def add_all(self, slot: int, parts: list, packets: list, now: float, out: list,
                learn: list | None = None, metas: list | None = None) -> None:
        """The parts of one frame (a None part was refused, and is left out); every join they
        complete -- or push out past ``limit`` -- goes to ``out``. With one slot, every part is complete."""
        learn = repeat(False) if learn is None else learn
        metas = repeat(b"") if metas is None else metas
        if len(self.widths) == 1:
            out.extend((packet, part, lrn, meta) for packet, part, lrn, meta in zip(packets, parts, learn, metas)
                       if part is not None)
            return
        complete, pending, slots = [], self.pending, len(self.widths)
        for packet, part, lrn, meta in zip(packets, parts, learn, metas):  # :meth:`add`, inlined: the hot loop
            if part is None:
                continue
            join = pending.get(packet)
            if join is None:
                if self.remember and packet in self.done:
                    self.counters["late"] += 1
                    continue
                join = pending[packet] = Join(slots, now, lrn, meta)
                if len(pending) > self.limit:
                    out.append(self._finished(*pending.popitem(last=False)))
            got = join.parts
            if slot >= len(got):
                continue
            if got[slot] is None:
                join.count += 1
            got[slot] = part
            if join.count == len(got):
                del pending[packet]
                complete.append((packet, join))
        if complete:
            out.extend(self._finished_all(complete))

    def add(self, packet: int, slot: int, part: np.ndarray, now: float, out: list,
            learn: bool = False, meta: bytes = b"") -> None:
        """Add one part; a join this completes -- or pushes out past ``limit`` -- goes to ``out``."""
        join = self.pending.get(packet)
        if join is None:
            if self.remember and packet in self.done:
                self.counters["late"] += 1
                return
            join = self.pending[packet] = Join(len(self.widths), now, learn, meta)
            if len(self.pending) > self.limit:
                out.append(self._finished(*self.pending.popitem(last=False)))
        if slot >= len(join.parts):
            return  # from a link made after this join was opened (the packet never went that way)
        if join.parts[slot] is None:
            join.count += 1
        join.parts[slot] = part
        if join.count == len(join.parts):
            del self.pending[packet]
            out.append(self._finished(packet, join))

    def overdue(self, now: float, timeout_s: float) -> list[tuple]:
        """Take out (oldest first) the joins whose first part came ``timeout_s`` or more ago."""
        out = []
        pending = self.pending
        while pending:
            packet, join = next(iter(pending.items()))
            if now - join.started < timeout_s:
                break
            del pending[packet]
            out.append(self._finished(packet, join))
        return out

    def take_all(self) -> list[tuple]:
        """Every open join, oldest first, with what it has (before links change)."""
        return [self._finished(*self.pending.popitem(last=False)) for _ in range(len(self.pending))]

    def resize(self, widths: list[int]) -> None:
        """One part per entry of ``widths`` for the joins opened from now on; those open keep theirs."""
        self.widths = list(widths)

    def next_deadline(self, timeout_s: float) -> float | None:
        """When the oldest open join is due (monotonic seconds), or None with none open."""
        if not self.pending:
            return None
        return next(iter(self.pending.values())).started + timeout_s

    def _finished_all(self, complete: list[tuple[int, Join]]) -> list[tuple]:
        """:meth:`_finished` of complete joins, with one array operation per slot for all of them when their
        parts have one row count per packet (the usual case): each value is a view of the whole."""
        if len(complete) == 1:
            return [self._finished(*complete[0])]
        slots = len(complete[0][1].parts)
        parts = [join.parts for _, join in complete]
        rows = [p[0].shape[0] for p in parts]
        if [len(p) for p in parts] != [slots] * len(parts) or any(
                [p[slot].shape[0] for p in parts] != rows for slot in range(1, slots)):
            return [self._finished(packet, join) for packet, join in complete]
        blocks = [np.concatenate([p[slot] for p in parts]) for slot in range(slots)]
        if self.concat:
            whole = np.concatenate(blocks, axis=1)
        else:
            whole = blocks[0]
            for block in blocks[1:]:
                whole += block
        if self.remember:
            for packet, _ in complete:
                self.done[packet] = None
            while len(self.done) > self.remember:
                self.done.popitem(last=False)
        return [(packet, value, join.learn, join.meta) for (packet, join), value in zip(complete, slices(whole, rows))]

    def _finished(self, packet: int, join: Join) -> tuple:
        missing = len(join.parts) - join.count
        if not self.concat:
            value = summed(join.parts)
        elif missing or len({part.shape[0] for part in join.parts}) > 1:
            parts, replaced = filled(join.parts, self.widths)
            value = np.concatenate(parts, axis=1)
            missing += replaced
        else:
            value = np.concatenate(join.parts, axis=1)
        if missing:
            self.counters[self.missed] += missing
        if self.remember:
            self.done[packet] = None
            if len(self.done) > self.remember:
                self.done.popitem(last=False)
        return packet, value, join.learn, join.meta


def filled(parts: list, widths: list[int]) -> tuple[list[np.ndarray], int]:
    """The parts with zeros in place of the missing, and how many present parts were replaced too for
    having another row count than the first one (a join always has at least one part)."""
    rows = next(p.shape[0] for p in parts if p is not None)
    out = [p if p is not None and p.shape[0] == rows else np.zeros((rows, w), dtype=np.float32)
           for p, w in zip(parts, widths)]
    return out, sum(1 for p, o in zip(parts, out) if p is not None and p is not o)


def summed(parts: list) -> np.ndarray:
    """The sum of the parts present (a part of another shape than the first is left out)."""
    present = [p for p in parts if p is not None]
    total = present[0].copy()
    for p in present[1:]:
        if p.shape == total.shape:
            total += p
    return total
