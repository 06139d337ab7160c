"""The main screen: tree and detail on the left, layers, vitals and the event log on the right."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from ..widgets import EventLog, LayerGraph, NeuronDetail, SupervisionTree, Vitals


class MainScreen(Screen):
    AUTO_FOCUS = "#tree"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        with Horizontal():
            with Vertical(id="left"):
                yield SupervisionTree(id="tree")
                yield NeuronDetail(id="detail")
            with Vertical(id="right"):
                yield LayerGraph(id="graph")
                yield Vitals(id="vitals")
                yield Input(placeholder="filter events (press / to edit)", id="filter")
                yield EventLog(id="events")
        yield Footer()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(EventLog).set_filter(event.value)
