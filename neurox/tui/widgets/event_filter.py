"""The event log's filter box: applies as you type; Enter or Escape hands the keys back to the tree."""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class EventFilter(Input):
    BINDINGS = [Binding("escape", "done", "back to the tree")]

    def __init__(self, **kwargs):
        super().__init__(placeholder="filter events: press / and type", **kwargs)

    def on_input_submitted(self) -> None:
        self.action_done()

    def action_done(self) -> None:
        self.screen.query_one("#tree").focus()
