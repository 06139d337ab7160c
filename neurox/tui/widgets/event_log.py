"""The event log, filterable by a substring of the event name or source."""
from __future__ import annotations

import time

from textual.widgets import RichLog

COLOURS = {"child_exited": "red", "child_restarted": "yellow", "neuron_seeded": "cyan", "intensity_exceeded": "b red",
           "reshaped": "magenta", "flush_failed": "red"}
LIMIT = 500


class EventLog(RichLog):
    def __init__(self, **kwargs):
        super().__init__(max_lines=LIMIT, markup=True, wrap=False, **kwargs)
        self.filter = ""
        self.kept: list[dict] = []

    def add(self, event: dict) -> None:
        self.kept = (self.kept + [event])[-LIMIT:]
        if self._matches(event):
            self.write(self._line(event))

    def set_filter(self, text: str) -> None:
        self.filter = text
        self.clear()
        for event in self.kept:
            if self._matches(event):
                self.write(self._line(event))

    def _matches(self, event: dict) -> bool:
        return not self.filter or self.filter in f"{event.get('event')} {event.get('source')} {event.get('id', '')}"

    @staticmethod
    def _line(event: dict) -> str:
        name = str(event.get("event"))
        colour = COLOURS.get(name, "white")
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("t", time.time())))
        detail = event.get("description") or event.get("method") or event.get("op") or ""
        return f"[dim]{stamp}[/] [{colour}]{name}[/] {event.get('source')} {event.get('id', '')} {detail}"
