"""Feeding a network and keeping the books: the ``Feed`` every input keeps, and ``Stream``.

A :class:`Feed` is the accounting of one origin's packets in flight: at most ``window`` at a time (after
a slow start, :func:`window_limit`: one at first, one more per ``ramp`` samples answered up to ``knee``
packets, then one more per packet answered; ``neuron.DEFAULT_RAMP``, ``neuron.DEFAULT_KNEE``), at most
``rate`` samples a second (and, if ``pace``, one packet per ``round trip / window``, the round trip
measured from the answers, instead of refilling the window in bursts: smaller bundles, less speed;
docs/neuron.md, "Staleness"), each scored prequentially (test-then-train) when its answer comes:
the answer is the network's prediction *before* it learns from that sample, because a neuron computes
its forward pass before the gradient of the same packet comes back. A packet whose answer does not
come back in ``packet_timeout_s`` (a neuron died with it) is counted lost and the feed goes on.

:class:`Stream` feeds a whole dataset through a Feed from the calling thread (``neurox run``, the
benchmarks, the tests). The ``stream`` extension (:mod:`neurox.ext.stream`) does the same as a
supervised process, from a file or standard input, through the same Feed.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import zmq

from ..neuron import DEFAULT_KNEE, DEFAULT_RAMP, DEFAULT_WINDOW, Topology
from ._datasets import Dataset
from ._origin import Origin

ROLLING = 1000
ROUND_TRIP_SMOOTHING = 0.1
"""Weight of the newest answer in the round trip the feed paces by (an exponential moving average)."""
RUN_WINDOW = DEFAULT_WINDOW
"""Packets in flight when ``neurox run`` feeds a dataset (what a user gets; the benchmarks use it too): the
most that keeps the accuracy of one process under the staleness rule (docs/neuron.md, "Staleness")."""
RUN_BATCH = 1
"""Samples per packet when ``neurox run`` feeds a dataset."""


@dataclass(frozen=True)
class StreamProgress:
    epoch: int
    sent: int
    answered: int
    lost: int
    accuracy: float | None
    """Prequential accuracy over every answered sample that had a class target."""
    rolling_accuracy: float | None
    """Over the last 1,000 of them."""
    mean_loss: float | None
    samples_per_s: float
    elapsed_s: float
    scored: int = 0
    """Answered samples that had a class target (what the accuracies are over)."""
    rmse: float | None = None
    """Regression: prequential root mean squared error, in the user's units (answers come back in them)."""
    mae: float | None = None
    """Regression: prequential mean absolute error, in the user's units."""
    rolling_rmse: float | None = None
    """Regression: the RMSE over the last 1,000 answered samples."""


def window_limit(answered: int, window: int, ramp: int, knee: int = DEFAULT_KNEE) -> int:
    """Packets that may be in flight once ``answered`` samples (or packets) came back: one at first, one more
    per ``ramp`` answered up to ``knee`` (the first samples, learnt most from, learnt at small windows), then
    one more per one answered -- the window doubles every round trip, as in TCP's slow start -- up to
    ``window``. ``ramp`` 0: the whole window at once."""
    if not ramp:
        return window
    slow = ramp * (knee - 1)
    limit = 1 + answered // ramp if answered < slow else knee + answered - slow
    return min(window, limit)


class Feed:
    """Packets of one origin in flight, and how their answers scored (times from ``time.perf_counter``)."""

    def __init__(self, window: int, rate: float | None = None, packet_timeout_s: float = 5.0, pace: bool = False,
                 ramp: int = DEFAULT_RAMP, knee: int = DEFAULT_KNEE):
        self.window, self.rate, self.packet_timeout_s, self.pace = window, rate, packet_timeout_s, pace
        self.ramp, self.knee = ramp, knee
        """Slow start (:func:`window_limit`): samples answered per one more packet in flight, from one up to
        ``knee`` (0: the whole window from the start); past ``knee``, one more per sample answered."""
        self.in_flight: dict[int, tuple[np.ndarray | None, int, float]] = {}
        """packet -> (class targets to score against or None, rows, sent at)."""
        self.sent = self.answered = self.lost = self.correct = self.scored = 0
        self.loss_sum = 0.0
        self.loss_count = 0
        self.recent: deque[bool] = deque(maxlen=ROLLING)
        self.values: dict[int, np.ndarray] = {}
        """packet -> regression targets (rows x outputs, the user's units) its answer is scored against."""
        self.squared = self.absolute = 0.0
        self.regressed = 0
        self.recent_squared: deque[float] = deque(maxlen=ROLLING)
        self.started = time.perf_counter()
        self.next_slot = 0.0
        """When the rate lets the next packet go: time idle earns no burst."""
        self.round_trip: float | None = None
        """Seconds from sending a packet to its answer (smoothed); None before the first answer."""
        self.next_paced = 0.0
        """When pacing lets the next packet go."""

    @property
    def limit(self) -> int:
        """Packets that may be in flight now: the window, or less during the slow start."""
        return window_limit(self.answered, self.window, self.ramp, self.knee)

    def may_send(self, now: float) -> bool:
        """Whether one more packet may go now (window and rate)."""
        return (len(self.in_flight) < self.limit and (self.rate is None or now >= self.next_slot)
                and now >= self.next_paced)

    def room(self, now: float) -> int:
        """Packets that may go now at once (as one bundle): the room in the window, or one when a rate or
        pacing spaces them."""
        if not self.may_send(now):
            return 0
        return 1 if self.rate is not None or self.pace else self.limit - len(self.in_flight)

    def sending(self, packet: int, rows: int, class_targets, now: float, values=None) -> None:
        """Book a packet just sent; ``class_targets`` (class indices) or ``values`` (regression targets) if
        its answer is to be scored."""
        self.in_flight[packet] = (None if class_targets is None else np.asarray(class_targets), rows, now)
        if values is not None:
            self.values[packet] = np.asarray(values, dtype=np.float64).reshape(rows, -1)
        self.sent += rows
        if self.rate is not None:
            self.next_slot = max(self.next_slot, now) + rows / self.rate
        if self.pace and self.round_trip is not None:
            gap = self.round_trip / self.limit
            self.next_paced = max(self.next_paced, now - gap) + gap  # a late send may catch up by one gap

    def answer(self, result: dict, now: float | None = None) -> bool:
        """Score one result from MessengerOut (received at ``now``); False if its packet is not in flight
        here (late or unknown)."""
        packet = result.get("packet")
        entry = self.in_flight.pop(packet, None) if isinstance(packet, int) else None
        if entry is None:
            return False
        targets, rows, sent_at = entry
        took = (time.perf_counter() if now is None else now) - sent_at
        self.round_trip = took if self.round_trip is None else self.round_trip + ROUND_TRIP_SMOOTHING * (
            took - self.round_trip)
        self.answered += rows
        self._score_values(self.values.pop(packet, None), result.get("output"))
        labels = result.get("label")
        if targets is not None and isinstance(labels, list) and len(labels) == len(targets):
            hits = np.asarray(labels) == targets
            self.correct += int(hits.sum())
            self.scored += len(targets)
            self.recent.extend(hits.tolist())
        loss = result.get("loss")
        if isinstance(loss, (int, float)):
            self.loss_sum += loss * rows
            self.loss_count += rows
        return True

    def _score_values(self, values: np.ndarray | None, output) -> None:
        """Squared and absolute errors of a regression answer (``output``: float32 bytes or a list)."""
        if values is None or output is None:
            return
        try:
            answer = (np.frombuffer(output, dtype="<f4") if isinstance(output, bytes) else np.asarray(
                output, dtype=np.float64)).reshape(values.shape)
        except (TypeError, ValueError):
            return
        errors = answer - values
        squared = (errors ** 2).mean(axis=1)
        self.squared += float(squared.sum())
        self.absolute += float(np.abs(errors).mean(axis=1).sum())
        self.regressed += len(values)
        self.recent_squared.extend(squared.tolist())

    def expire(self, now: float) -> int:
        """Give up on packets unanswered for ``packet_timeout_s``; the samples lost by this call."""
        lost = 0
        for packet in [p for p, (_, _, t) in self.in_flight.items() if now - t > self.packet_timeout_s]:
            lost += self.in_flight.pop(packet)[1]
            self.values.pop(packet, None)
        self.lost += lost
        return lost

    def next_due(self, now: float) -> float | None:
        """Seconds until something may change without an answer coming: a rate slot or an expiry."""
        due = []
        if self.in_flight:
            due.append(min(t for _, _, t in self.in_flight.values()) + self.packet_timeout_s - now)
        if len(self.in_flight) < self.limit:
            due.extend([self.next_slot - now] if self.rate is not None else [])
            due.extend([self.next_paced - now] if self.next_paced > now else [])
        return max(0.0, min(due)) if due else None

    def progress(self, epoch: int = 0) -> StreamProgress:
        elapsed = time.perf_counter() - self.started
        return StreamProgress(
            epoch, self.sent, self.answered, self.lost,
            self.correct / self.scored if self.scored else None,
            float(np.mean(self.recent)) if self.recent else None,
            self.loss_sum / self.loss_count if self.loss_count else None,
            self.answered / elapsed if elapsed > 0 else 0.0, elapsed, self.scored,
            float(np.sqrt(self.squared / self.regressed)) if self.regressed else None,
            self.absolute / self.regressed if self.regressed else None,
            float(np.sqrt(np.mean(self.recent_squared))) if self.recent_squared else None)


class Stream:
    """Feeds a dataset into a network from the calling thread, ``window`` packets of ``batch`` at a time."""

    def __init__(self, ctx: zmq.Context, run_dir: str, topology: Topology, dataset: Dataset, window: int = DEFAULT_WINDOW,
                 batch: int = 1, rate: float | None = None, learn: bool = True, packet_timeout_s: float = 5.0,
                 seed: int = 0, name: str = "stream", shuffle: bool = True, pace: bool = False,
                 ramp: int = DEFAULT_RAMP):
        if dataset.width != topology.input_width:
            raise ValueError(f"the dataset has {dataset.width} features; the network takes {topology.input_width}")
        self.origin = Origin(ctx, run_dir, topology, name)
        self.dataset = dataset
        self.batch, self.learn = batch, learn
        self.feed = Feed(window, rate, packet_timeout_s, pace, ramp)
        self.rng = np.random.default_rng(seed)
        self.shuffle = shuffle
        """False: every epoch in the dataset's own order (a stream with drift)."""
        self.epoch = 0

    def run(self, epochs: int = 1, on_progress=None, every_s: float = 1.0, should_stop=lambda: False) -> StreamProgress:
        """Feed ``epochs`` passes over the data; ``on_progress(progress)`` is called every ``every_s``."""
        feed = self.feed
        feed.started = time.perf_counter()
        next_report = feed.started + every_s
        schedule = self._packets(epochs)
        pending = next(schedule, None)
        while (pending is not None or feed.in_flight) and not should_stop():
            now = time.perf_counter()
            ready = []
            while pending is not None and len(ready) < feed.room(now):
                ready.append(pending)
                pending = next(schedule, None)
            if ready and not self._send(ready, now):
                pending, schedule = ready[0], itertools.chain(ready[1:], [] if pending is None else [pending], schedule)
            due = feed.next_due(time.perf_counter()) if pending is not None else None
            if self.origin.returns.poll(50 if due is None else min(50, max(1, math.ceil(due * 1000)))):
                while True:
                    try:
                        results = self.origin.receive(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    received = time.perf_counter()
                    for result in results:
                        feed.answer(result, received)
            feed.expire(time.perf_counter())
            if on_progress and time.perf_counter() >= next_report:
                on_progress(self.progress())
                next_report += every_s
        return self.progress()

    def _send(self, ready: list[tuple[int, np.ndarray]], now: float) -> bool:
        """The packets ready to go, in one frame (one bundle); False if the start of the network is not taking
        packets (restarting): they go again after a poll."""
        targets = [self.dataset.targets[rows] for _, rows in ready]
        try:
            packets = self.origin.send_bundle([self.dataset.features[rows] for _, rows in ready],
                                              [t.tolist() for t in targets], self.learn, block=False)
        except zmq.Again:
            return False
        classified = self.dataset.classes is not None
        for packet, (epoch, rows), t in zip(packets, ready, targets):
            self.epoch = epoch
            self.feed.sending(packet, len(rows), t if classified else None, now, None if classified else t)
        return True

    def orders(self, epochs: int) -> list[np.ndarray]:
        """The sample order of each of the next ``epochs`` epochs :meth:`run` will feed (for references
        that must see the same order)."""
        rng = copy.deepcopy(self.rng)
        return [self._order(rng) for _ in range(epochs)]

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        count = len(self.dataset.targets)
        return rng.permutation(count) if self.shuffle else np.arange(count)

    def _packets(self, epochs: int):
        for epoch in range(epochs):
            order = self._order(self.rng)
            for at in range(0, len(order), self.batch):
                yield epoch, order[at:at + self.batch]

    def progress(self) -> StreamProgress:
        return self.feed.progress(self.epoch)

    def close(self) -> None:
        self.origin.close()
