"""Throughput, accuracy and restart sparklines over the last minute or so."""
from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Sparkline

from .._observer import ProcessRow

HISTORY = 60


class Vitals(Horizontal):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.samples: list[float] = []
        self.restarts: list[float] = []
        self.accuracy: list[float] = []
        self.previous: tuple[float, int] | None = None
        self.restarts_now = 0

    def compose(self) -> ComposeResult:
        yield Label("samples/s", id="vitals-rate")
        yield Sparkline([], id="vitals-throughput")
        yield Label("accuracy", id="vitals-accuracy-label")
        yield Sparkline([], id="vitals-accuracy")
        yield Label("restarts", id="vitals-restarts-label")
        yield Sparkline([], id="vitals-restarts")

    def note_restart(self) -> None:
        self.restarts_now += 1

    def show(self, rows: list[ProcessRow]) -> None:
        ends = [r for r in rows if r.is_neuron and r.status.get("outputs") == ["output"]]
        samples = sum(r.status.get("metrics", {}).get("samples", 0) for r in ends)
        now = time.monotonic()
        if self.previous is not None and now > self.previous[0]:
            rate = max(0.0, (samples - self.previous[1]) / (now - self.previous[0]))
            self.samples = (self.samples + [rate])[-HISTORY:]
            self.restarts = (self.restarts + [float(self.restarts_now)])[-HISTORY:]
            self.restarts_now = 0
            self.query_one("#vitals-rate", Label).update(f"samples/s {rate:,.0f}")
            self.query_one("#vitals-throughput", Sparkline).data = self.samples
            self.query_one("#vitals-restarts", Sparkline).data = self.restarts
            out = next((r for r in rows if r.name == "messenger_out"), None)
            accuracy = (out.status.get("metrics", {}) if out else {}).get("recent_accuracy")
            if accuracy is not None:
                self.accuracy = (self.accuracy + [accuracy])[-HISTORY:]
                self.query_one("#vitals-accuracy-label", Label).update(f"accuracy {accuracy:.2f}")
                self.query_one("#vitals-accuracy", Sparkline).data = self.accuracy
        self.previous = (now, samples)
