"""Joining the parts of each packet that a neuron gets from several neighbours, with a deadline.

A neuron with several inputs receives one forward part per input for each packet id; one with
several outputs receives one gradient per output. Parts come in frames, each a bundle of packets
whose rows are stacked in one block. :class:`Joins` keeps the parts received so far in slot order
(a link's slot, ``_links``), says when packets are complete, takes out the joins whose first part is
older than the deadline (they go on without what is missing, which is counted), and -- for forward
parts -- remembers the ids completed lately, so that a part arriving after its packet went on is
recognised as ``late`` and dropped instead of starting a join that could never complete.

When every slot's frame carries the same packets with the same rows -- as a bundle travels through
a layer whose neurons all got it at once, the usual case under load -- the frames are joined whole
(a *block join*): no packet is taken apart and put back together, which in Python cost a neuron
more than its arithmetic on a batched bundle. Any other frame is joined packet by packet (a block
join it overlaps is taken apart first). Either way a join gives a :class:`Run`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from ._frames import slices

MAX_PENDING = 4096
"""Packets joined at once; past this the oldest join goes on with what it has."""
RECENT_DONE = 8192
"""Completed packet ids remembered so that a late part is recognised and dropped, not re-joined."""


class Run(NamedTuple):
    """Packets that go on together: their rows stacked in ``value`` (``rows`` each), learn flags, metas."""

    packets: list
    value: np.ndarray
    rows: list
    learn: list
    metas: list


def stacked_runs(runs: list[Run]) -> Run:
    """Several runs as one (their packets in order)."""
    if len(runs) == 1:
        return runs[0]
    return Run([p for run in runs for p in run.packets], np.concatenate([run.value for run in runs]),
               [n for run in runs for n in run.rows], [f for run in runs for f in run.learn],
               [m for run in runs for m in run.metas])


class Join:
    """The parts of one packet received so far, in a fixed slot order, and what came with the first."""

    __slots__ = ("parts", "count", "started", "learn", "meta")

    def __init__(self, slots: int, started: float, learn: bool, meta: bytes):
        self.parts: list = [None] * slots
        self.count = 0
        self.started = started
        self.learn = learn
        self.meta = meta


class BlockJoin:
    """The whole-frame parts received so far for one bundle of packets (``packets``, ``rows`` each)."""

    __slots__ = ("packets", "rows", "parts", "count", "started", "learn", "metas")

    def __init__(self, packets: list, rows: list, slots: int, started: float, learn: list, metas: list):
        self.packets, self.rows, self.learn, self.metas = packets, rows, learn, metas
        self.parts: list = [None] * slots
        self.count = 0
        self.started = started


class Joins:
    """Open joins over one part per slot, oldest first; what they give is :class:`Run`\\ s.

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
        self.blocks: OrderedDict[tuple, BlockJoin] = OrderedDict()
        self.in_blocks: dict[int, tuple] = {}
        """Each packet of an open block join, to the key of its join."""
        self.done: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        """Packets with a join open."""
        return len(self.pending) + len(self.in_blocks)

    def add_frame(self, slot: int, block: np.ndarray, rows: list, packets: list, now: float, out: list,
                  learn: list | None = None, metas: list | None = None, refused: list[int] = ()) -> None:
        """The parts of one frame, the rows of its ``packets`` stacked in ``block`` (``rows`` each; the
        indexes in ``refused`` were refused, and are left out); every run they complete -- or push out
        past ``limit`` -- goes to ``out``. With one slot, the frame is complete as it is."""
        learn = [False] * len(packets) if learn is None else learn
        metas = [b""] * len(packets) if metas is None else metas
        if refused:
            parts = slices(block, rows)
            for i in refused:
                parts[i] = None
            self.add_all(slot, parts, packets, now, out, learn, metas)
            return
        if len(self.widths) == 1:
            out.append(Run(packets, block, rows, learn, metas))
            return
        key = tuple(packets)
        join = self.blocks.get(key)
        if join is None and not self._touches(packets):
            members = dict.fromkeys(packets, key)
            if len(members) == len(packets):  # no packet twice (a bad frame's): else one by one
                join = self.blocks[key] = BlockJoin(packets, rows, len(self.widths), now, learn, metas)
                self.in_blocks.update(members)
        if join is None or join.rows != rows:  # another grouping of these packets: one by one
            self.add_all(slot, slices(block, rows), packets, now, out, learn, metas)
            return
        if slot < len(join.parts):  # else from a link made after this join was opened
            if join.parts[slot] is None:
                join.count += 1
            join.parts[slot] = block
            if join.count == len(join.parts):
                out.append(self._block_finished(self._close_block(key)))
        self._push_out(out)

    def add_all(self, slot: int, parts: list, packets: list, now: float, out: list,
                learn: list | None = None, metas: list | None = None) -> None:
        """The parts of one frame packet by packet (a None part was refused, and is left out); the
        joins they complete -- or push out past ``limit`` -- go to ``out``. With one slot, every part
        is complete."""
        learn = [False] * len(packets) if learn is None else learn
        metas = [b""] * len(packets) if metas is None else metas
        if len(self.widths) == 1:
            out.extend(_run_of_one(packet, part, lrn, meta) for packet, part, lrn, meta
                       in zip(packets, parts, learn, metas) if part is not None)
            return
        if self.in_blocks and not self.in_blocks.keys().isdisjoint(packets):
            self._take_apart({self.in_blocks[p] for p in packets if p in self.in_blocks})
        complete, pending, slots = [], self.pending, len(self.widths)
        for packet, part, lrn, meta in zip(packets, parts, learn, metas):  # the hot loop, inlined
            if part is None:
                continue
            join = pending.get(packet)
            if join is None:
                if self.remember and packet in self.done:
                    self.counters["late"] += 1
                    continue
                join = pending[packet] = Join(slots, now, lrn, meta)
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
            out.append(self._finished_all(complete))
        self._push_out(out)

    def overdue(self, now: float, timeout_s: float) -> list[Run]:
        """Take out (oldest first) the joins whose first part came ``timeout_s`` or more ago."""
        out = []
        while True:
            key, started = self._oldest()
            if key is None or now - started < timeout_s:
                return out
            out.append(self._take(key))

    def take_all(self) -> list[Run]:
        """Every open join, oldest first, with what it has (before links change)."""
        out = []
        while True:
            key, _ = self._oldest()
            if key is None:
                return out
            out.append(self._take(key))

    def resize(self, widths: list[int]) -> None:
        """One part per entry of ``widths`` for the joins opened from now on; those open keep theirs."""
        self.widths = list(widths)

    def next_deadline(self, timeout_s: float) -> float | None:
        """When the oldest open join is due (monotonic seconds), or None with none open."""
        key, started = self._oldest()
        return None if key is None else started + timeout_s

    # -- inside ---------------------------------------------------------------------------------
    def _touches(self, packets: list) -> bool:
        """Whether any of ``packets`` has a join open or (remembered) went on already."""
        return not (self.pending.keys().isdisjoint(packets) and self.in_blocks.keys().isdisjoint(packets)
                    and (not self.remember or self.done.keys().isdisjoint(packets)))

    def _oldest(self) -> tuple:
        """The key of the oldest open join (a packet id, or a block join's tuple) and when it started."""
        first = next(iter(self.pending.items()), None)
        block = next(iter(self.blocks.items()), None)
        if block is not None and (first is None or block[1].started < first[1].started):
            return block[0], block[1].started
        return (None, None) if first is None else (first[0], first[1].started)

    def _take(self, key) -> Run:
        """The open join ``key`` taken out, with what it has."""
        if type(key) is tuple:
            return self._block_finished(self._close_block(key))
        return self._finished(key, self.pending.pop(key))

    def _push_out(self, out: list) -> None:
        while len(self) > self.limit:
            out.append(self._take(self._oldest()[0]))

    def _close_block(self, key: tuple) -> BlockJoin:
        join = self.blocks.pop(key)
        in_blocks = self.in_blocks
        for packet in join.packets:
            del in_blocks[packet]
        return join

    def _take_apart(self, keys: set) -> None:
        """Block joins overlapped by another grouping of their packets, as one join per packet (each
        part a view of its block), ordered with the others by start."""
        for key in keys:
            join = self._close_block(key)
            pieces = [None if part is None else slices(part, join.rows) for part in join.parts]
            for i, packet in enumerate(join.packets):
                single = self.pending[packet] = Join(len(join.parts), join.started, join.learn[i], join.metas[i])
                single.parts = [None if piece is None else piece[i] for piece in pieces]
                single.count = join.count
        self.pending = OrderedDict(sorted(self.pending.items(), key=lambda item: item[1].started))

    def _remember_done(self, packets: list) -> None:
        if self.remember:
            done = self.done
            done.update(dict.fromkeys(packets))
            for _ in range(len(done) - self.remember):
                done.popitem(last=False)

    def _block_finished(self, join: BlockJoin) -> Run:
        missing = len(join.parts) - join.count
        if self.concat:
            value = np.concatenate(filled(join.parts, self.widths)[0], axis=1)
        else:
            value = summed(join.parts)
        if missing:
            self.counters[self.missed] += missing * len(join.packets)
        self._remember_done(join.packets)
        return Run(join.packets, value, join.rows, join.learn, join.metas)

    def _finished_all(self, complete: list[tuple[int, Join]]) -> Run:
        """The complete joins as one run, with one array operation per slot for all of them when their
        parts have one row count per packet (the usual case)."""
        if len(complete) == 1:
            return self._finished(*complete[0])
        slots = len(complete[0][1].parts)
        parts = [join.parts for _, join in complete]
        rows = [p[0].shape[0] for p in parts]
        if [len(p) for p in parts] != [slots] * len(parts) or any(
                [p[slot].shape[0] for p in parts] != rows for slot in range(1, slots)):
            return stacked_runs([self._finished(packet, join) for packet, join in complete])
        blocks = [np.concatenate([p[slot] for p in parts]) for slot in range(slots)]
        if self.concat:
            whole = np.concatenate(blocks, axis=1)
        else:
            whole = blocks[0]
            for block in blocks[1:]:
                whole += block
        packets = [packet for packet, _ in complete]
        self._remember_done(packets)
        return Run(packets, whole, rows, [join.learn for _, join in complete], [join.meta for _, join in complete])

    def _finished(self, packet: int, join: Join) -> Run:
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
        self._remember_done([packet])
        return _run_of_one(packet, value, join.learn, join.meta)


def _run_of_one(packet: int, value: np.ndarray, learn: bool, meta: bytes) -> Run:
    return Run([packet], value, [value.shape[0]], [learn], [meta])


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
