"""The event log, filterable as you type by a substring of the event name, source or id; reshapes in plain words."""
from __future__ import annotations

import time

from textual.widgets import RichLog

from .._words import describe_reshape, describe_self_reshape

COLOURS = {"child_exited": "red", "child_restarted": "yellow", "neuron_seeded": "cyan", "intensity_exceeded": "b red",
           "reshaped": "magenta", "flush_failed": "red"}
LIMIT = 500


class EventLog(RichLog):
    def __init__(self, **kwargs):
        super().__init__(max_lines=LIMIT, markup=True, wrap=True, min_width=20, **kwargs)
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
        if name == "reshaped":
            detail = describe_reshape(str(event.get("op")), event.get("result"))
        elif name == "self_reshaped":
            detail = describe_self_reshape(event)
        else:
            detail = event.get("description") or event.get("method") or event.get("op") or ""
        return f"[dim]{stamp}[/] [{colour}]{name}[/] {event.get('source')} {event.get('id', '')} {detail}"
