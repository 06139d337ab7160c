"""The main screen: tree and detail on the left, layers, vitals and the event log on the right."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from ..widgets import EventFilter, EventLog, LayerGraph, NeuronDetail, SupervisionTree, Vitals


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
                yield EventFilter(id="filter")
                yield EventLog(id="events")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        for selector, title in (("#tree", "supervision tree"), ("#detail", "neuron"), ("#graph", "layers"),
                                ("#vitals", "vitals"), ("#events", "events")):
            self.query_one(selector).border_title = title

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(EventLog).set_filter(event.value)
