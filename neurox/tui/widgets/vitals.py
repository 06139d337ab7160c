"""Throughput, accuracy and restarts: each a name, its number now, and a sparkline over the last minute;
and the input scaling MessengerIn applies, in one line."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from .._observer import ProcessRow
from .._words import scaling_line

HISTORY = 60
Reading = tuple[float, int]
"""A neuron's ``(uptime_s, samples)`` as its last report said: the uptime dates the count."""


def update_rates(last: dict[str, Reading], rates: dict[str, float], readings: dict[str, Reading]) -> None:
    """Each end neuron's samples/s, from two of its own reports (so a stale or repeated report, or a snapshot
    that arrives early or late, never makes a spike); a neuron seen for the first time, or replaced (its
    uptime went back), has no rate until its next report. Updates ``last`` and ``rates`` in place."""
    for name in set(last) - set(readings):
        last.pop(name)
        rates.pop(name, None)
    for name, (uptime, samples) in readings.items():
        before = last.get(name)
        if before is None or uptime < before[0] or samples < before[1]:
            rates.pop(name, None)
        elif uptime > before[0]:
            rates[name] = (samples - before[1]) / (uptime - before[0])
        else:
            continue  # the same report again: keep the rate it gave
        last[name] = (uptime, samples)


def end_readings(rows: list[ProcessRow]) -> dict[str, Reading]:
    """The ``(uptime_s, samples)`` of every neuron that feeds the output."""
    readings = {}
    for row in rows:
        metrics = row.status.get("metrics", {})
        if row.is_neuron and row.status.get("outputs") == ["output"] and "uptime_s" in row.status \
                and isinstance(metrics.get("samples"), int):
            readings[row.name] = (float(row.status["uptime_s"]), metrics["samples"])
    return readings


class Vitals(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.samples: list[float] = []
        self.restarts: list[float] = []
        self.accuracy: list[float] = []
        self.last: dict[str, Reading] = {}
        self.rates: dict[str, float] = {}
        self.restarts_now = 0

    def compose(self) -> ComposeResult:
        for key, name in (("throughput", "samples/s"), ("accuracy", "accuracy"), ("restarts", "restarts/min")):
            with Horizontal(classes="vital"):
                yield Label(name, classes="vital-name")
                yield Label("…", id=f"vitals-{key}-value", classes="vital-value")
                yield Sparkline([], id=f"vitals-{key}")
        with Horizontal(classes="vital", id="vitals-scaling-row"):
            yield Label("scaling", classes="vital-name")
            yield Label("…", id="vitals-scaling")

    def show_scaling(self, answer: dict | None) -> None:
        self.query_one("#vitals-scaling", Label).update(scaling_line(answer))

    def note_restart(self) -> None:
        self.restarts_now += 1

    def show(self, rows: list[ProcessRow]) -> None:
        update_rates(self.last, self.rates, end_readings(rows))
        if self.rates:
            rate = sum(self.rates.values())
            self.samples = (self.samples + [rate])[-HISTORY:]
            self._set("throughput", f"{rate:,.0f}", self.samples)
        self.restarts = (self.restarts + [float(self.restarts_now)])[-HISTORY:]
        self.restarts_now = 0
        self._set("restarts", f"{sum(self.restarts):.0f}", self.restarts)
        out = next((r for r in rows if r.name == "messenger_out"), None)
        accuracy = (out.status.get("metrics", {}) if out else {}).get("recent_accuracy")
        if accuracy is not None:
            self.accuracy = (self.accuracy + [accuracy])[-HISTORY:]
            self._set("accuracy", f"{accuracy:.2f}", self.accuracy)

    def _set(self, key: str, value: str, history: list[float]) -> None:
        self.query_one(f"#vitals-{key}-value", Label).update(value)
        self.query_one(f"#vitals-{key}", Sparkline).data = history
