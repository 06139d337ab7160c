"""SampleInput: the extension base for a source of samples (files, devices, HTTP).

Its sources call :meth:`~SampleInput.offer` (push) or override :meth:`~SampleInput.refill` (pull); the
base queues what they offer, sends it in packets of ``batch`` samples -- everything that has room in the
window as one frame, as ``neurox run``'s :class:`~neurox.ext.Stream` does, so that the first layer computes
it in one go -- keeps at most ``window`` packets in flight and ``rate`` samples a second (a :class:`Feed`),
scores each answer prequentially and counts what was lost.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np
import zmq

from ..neuron import DEFAULT_WINDOW, Topology
from ._api import InputExtension
from ._mixing import JOIN_SETTINGS, MixSource, check_join
from ._pipes import Pipe
from ._samples import InputError, Sample, TargetSpace
from ._settings import Setting
from ._stream import Feed

BACKOFF_S = 0.01
"""How soon a SampleInput tries again when the start node is not taking more (back-pressure)."""


class SampleInput(InputExtension):
    """A source of samples. :meth:`offer` them; the base sends them in packets of ``batch``, at most
    ``window`` packets in flight and ``rate`` samples a second, and scores each answer.

    Pull sources (files) override :meth:`refill`, called whenever the queue has room. Push sources
    (a pipe, a socket) register their descriptor with :meth:`watch_source`: it is watched only while
    the queue has room, so a fast producer is held back by the network instead of filling memory.
    """

    settings_schema = {
        "window": Setting("packets in flight at once", DEFAULT_WINDOW, "int", minimum=1),
        "batch": Setting("samples per packet", 1, "int", minimum=1),
        "rate": Setting("samples per second at most; 0: as fast as the network takes them", 0.0, "float", minimum=0),
        "learn": Setting("learn from samples that carry a target (false: only score the answers against it)",
                         True, "bool"),
        "queue": Setting("samples waiting to be sent at most; a full queue holds the source back", 1000, "int",
                         minimum=1),
        "packet_timeout_s": Setting("a packet unanswered this long is counted lost", 5.0, "float", minimum=0.001),
        **JOIN_SETTINGS,
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        return check_join(super().configure(raw, name, topology), name, topology)

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.batch, self.learn, self.queue_limit = settings["batch"], settings["learn"], settings["queue"]
        self.targets = TargetSpace(self.topology)
        self.feed = Feed(settings["window"], settings["rate"] or None, settings["packet_timeout_s"])
        self.pending: deque[Sample] = deque()
        self._sources: dict[int, Callable[[], None]] = {}
        self._watched: set[int] = set()
        self._retry_at = 0.0
        self.counters.update(offered=0, sent=0, answered=0, lost=0)
        self.mix = MixSource(self.ctx, self.run_dir, self.name, settings["rate"]) if settings["join"] == "mix" else None

    @property
    def room(self) -> int:
        """Samples the queue can still take."""
        return self.queue_limit - len(self.pending)

    def offer(self, sample: Sample) -> bool:
        """Queue one sample to be sent; False (and nothing queued) when the queue is full.

        Raises InputError (``wrong_shape``) for a row that is not ``width`` finite values.
        """
        row = np.asarray(sample.row, dtype=np.float32).reshape(-1)
        if row.size != self.width:
            raise InputError("wrong_shape", f"a row of {row.size} values; the network takes {self.width}")
        if self.room <= 0:
            return False
        sample.row = row
        self.pending.append(sample)
        self.count("offered")
        return True

    def refill(self) -> float | None:
        """Offer what the source has ready (called when the queue has room); seconds until it wants to be
        called again, or None (it will be called again after the next event anyway)."""
        return None

    def watch_source(self, source, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when ``source`` (a file descriptor, a zmq socket or a :class:`Pipe`) is
        readable, but only while the queue has room."""
        self._sources[getattr(source, "fd", source)] = callback

    def unwatch_source(self, source) -> None:
        fd = getattr(source, "fd", source)
        self._sources.pop(fd, None)
        if fd in self._watched:
            self._watched.discard(fd)
            self.unwatch(fd)

    def read_source(self, pipe: Pipe) -> bytes | None:
        """What came on a watched :class:`Pipe` (standard input or a named pipe): bytes; ``b""`` once, at
        its end (or when it cannot be read, which is rejected as ``unreadable``), and it is no longer
        watched; None if nothing came after all."""
        try:
            data = pipe.read()
        except OSError as exc:
            self.reject("unreadable", f"{pipe.path}: {exc.strerror or exc}")
            data = b""
        if data == b"":
            self.unwatch_source(pipe)
        return data

    def tick(self) -> float | None:
        now = time.perf_counter()
        waits = [self.refill() if self.room > 0 else None]
        waits.append(self._pump(now))
        lost = self.feed.expire(now)
        if lost:
            self.count("lost", lost)
        self._pace_sources()
        waits.append(self.feed.next_due(now) if self.pending or self.feed.in_flight else None)
        waits = [w for w in waits if w is not None]
        return min(waits) if waits else None

    def _pump(self, now: float) -> float | None:
        if self.mix is not None:
            return self.mix.pump(self, now)  # published for the other inputs to mix in, not sent
        if now < self._retry_at:
            return self._retry_at - now
        while self.pending and (room := self.feed.room(now)) > 0:
            groups = self._packets(room)
            learning = groups[0][0].target is not None
            targets = [[s.target for s in group] for group in groups] if learning else None
            try:
                packets = self.submit_bundle([np.stack([s.row for s in group]) for group in groups], targets,
                                             [_tag_of(group) for group in groups], self.learn)
            except zmq.Again:
                for group in reversed(groups):
                    self.pending.extendleft(reversed(group))
                self.count("backpressure")
                self._retry_at = now + BACKOFF_S
                return BACKOFF_S
            classes = learning and self.targets.classification
            for packet, group, group_targets in zip(packets, groups, targets or [None] * len(groups)):
                self.feed.sending(packet, len(group), group_targets if classes else None, now,
                                  group_targets if learning and not classes else None)
            self.count("sent", sum(len(group) for group in groups))
        return None

    def _packets(self, count: int) -> list[list[Sample]]:
        """Up to ``count`` packets of up to ``batch`` samples taken from the queue, all learning (with a
        target) or all asking, as the first one: they go as one bundle."""
        learning = self.pending[0].target is not None
        groups: list[list[Sample]] = []
        while self.pending and len(groups) < count and (self.pending[0].target is not None) == learning:
            group = [self.pending.popleft()]
            while self.pending and len(group) < self.batch and (self.pending[0].target is not None) == learning:
                group.append(self.pending.popleft())
            groups.append(group)
        return groups

    def _pace_sources(self) -> None:
        for fd in self._sources:
            if self.room > 0 and fd not in self._watched:
                self.watch(fd, self._sources[fd])
                self._watched.add(fd)
            elif self.room <= 0 and fd in self._watched:
                self.unwatch(fd)
                self._watched.discard(fd)

    def on_result(self, result: dict) -> None:
        if self.feed.answer(result):
            self.counters["answered"] = self.feed.answered
        else:
            self.count("late")  # answered after it was counted lost

    def metrics(self) -> dict:
        progress = self.feed.progress()
        return {**super().metrics(), "pending": len(self.pending), "in_flight": len(self.feed.in_flight),
                "accuracy": progress.accuracy, "rolling_accuracy": progress.rolling_accuracy,
                "scored": progress.scored, "mean_loss": progress.mean_loss, "rmse": progress.rmse,
                "mae": progress.mae}

    def close(self) -> None:
        if self.mix is not None:
            self.mix.close()
        super().close()


def _tag_of(group: list[Sample]):
    """A packet's tag: its one sample's, or its samples' in a list (None when none of them has one)."""
    tags = [sample.tag for sample in group]
    return tags[0] if len(tags) == 1 else (tags if any(tag is not None for tag in tags) else None)
