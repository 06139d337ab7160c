"""The input-only stream extension: feed a dataset into a network to learn from, and score it.

Scoring is prequential (test-then-train): each sample's answer is the network's prediction *before*
it learns from that sample, because a neuron computes its forward pass before the gradient of the
same packet comes back. The stream keeps at most ``window`` packets in flight; a packet whose answer
does not come back in ``packet_timeout_s`` (a neuron died with it) is counted lost and the stream goes on.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import zmq

from ..neuron import Topology
from ._datasets import Dataset
from ._origin import Origin

ROLLING = 1000


@dataclass(frozen=True)
class StreamProgress:
    epoch: int
    sent: int
    answered: int
    lost: int
    accuracy: float | None
    """Prequential accuracy over every answered sample (classification)."""
    rolling_accuracy: float | None
    """Over the last 1,000 answered samples."""
    mean_loss: float | None
    samples_per_s: float
    elapsed_s: float


class Stream:
    def __init__(self, ctx: zmq.Context, run_dir: str, topology: Topology, dataset: Dataset, window: int = 64,
                 batch: int = 1, rate: float | None = None, learn: bool = True, packet_timeout_s: float = 5.0,
                 seed: int = 0, name: str = "stream"):
        if dataset.width != topology.input_width:
            raise ValueError(f"the dataset has {dataset.width} features; the network takes {topology.input_width}")
        self.origin = Origin(ctx, run_dir, topology, name)
        self.dataset = dataset
        self.window, self.batch, self.rate, self.learn = window, batch, rate, learn
        self.packet_timeout_s = packet_timeout_s
        self.rng = np.random.default_rng(seed)
        self.in_flight: dict[int, tuple[np.ndarray, float]] = {}
        self.sent = self.answered = self.lost = self.correct = 0
        self.loss_sum = 0.0
        self.loss_count = 0
        self.recent: deque[bool] = deque(maxlen=ROLLING)
        self.started = time.perf_counter()
        self.epoch = 0

    def run(self, epochs: int = 1, on_progress=None, every_s: float = 1.0, should_stop=lambda: False) -> StreamProgress:
        """Feed ``epochs`` passes over the data; ``on_progress(progress)`` is called every ``every_s``."""
        self.started = time.perf_counter()
        next_report = self.started + every_s
        schedule = self._packets(epochs)
        pending = next(schedule, None)
        while (pending is not None or self.in_flight) and not should_stop():
            now = time.perf_counter()
            while pending is not None and len(self.in_flight) < self.window and self._rate_allows(now):
                epoch, rows = pending
                self.epoch = epoch
                targets = self.dataset.targets[rows]
                packet = self.origin.send(self.dataset.features[rows], targets.tolist(), self.learn)
                self.in_flight[packet] = (targets, now)
                self.sent += len(rows)
                pending = next(schedule, None)
            wait_ms = 5 if pending is not None and self.rate else 50
            if self.origin.returns.poll(wait_ms):
                while True:
                    try:
                        results = self.origin.receive(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    for result in results:
                        self._on_result(result)
            self._expire(time.perf_counter())
            if on_progress and time.perf_counter() >= next_report:
                on_progress(self.progress())
                next_report += every_s
        return self.progress()

    def _packets(self, epochs: int):
        for epoch in range(epochs):
            order = self.rng.permutation(len(self.dataset.targets))
            for at in range(0, len(order), self.batch):
                yield epoch, order[at:at + self.batch]

    def _rate_allows(self, now: float) -> bool:
        return self.rate is None or self.sent < (now - self.started) * self.rate

    def _on_result(self, result: dict) -> None:
        entry = self.in_flight.pop(result.get("packet"), None)
        if entry is None:
            return  # an answer after its packet was given up for lost
        targets, _ = entry
        self.answered += len(targets)
        if "label" in result:
            hits = np.asarray(result["label"]) == targets
            self.correct += int(hits.sum())
            self.recent.extend(hits.tolist())
        if result.get("loss") is not None:
            self.loss_sum += result["loss"] * len(targets)
            self.loss_count += len(targets)

    def _expire(self, now: float) -> None:
        for packet in [p for p, (_, t) in self.in_flight.items() if now - t > self.packet_timeout_s]:
            self.lost += len(self.in_flight.pop(packet)[0])

    def progress(self) -> StreamProgress:
        elapsed = time.perf_counter() - self.started
        classified = self.dataset.classes is not None and self.answered
        return StreamProgress(
            self.epoch, self.sent, self.answered, self.lost,
            self.correct / self.answered if classified else None,
            float(np.mean(self.recent)) if classified and self.recent else None,
            self.loss_sum / self.loss_count if self.loss_count else None,
            self.answered / elapsed if elapsed > 0 else 0.0, elapsed)

    def close(self) -> None:
        self.origin.close()
