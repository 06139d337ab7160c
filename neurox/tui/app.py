"""The NeuroX terminal UI: attach to a running network, watch it live, reshape it.

One worker polls the tree (throttled to one snapshot a second, concurrently over every process) and
one follows the event bus; both only post messages, so the UI thread never waits on the network.
"""
from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App
from textual.command import Hit, Hits, Provider
from textual.css.query import NoMatches
from textual.widgets import Tree

from ._observer import Endpoints, Observer, ObserverError, ProcessRow, layer_of
from ._words import describe_attempt, describe_reshape, learning_state
from .messages import NetworkEvent, ObserverTrouble, ScalingState, TreeSnapshot
from .screens import ConfirmScreen, MainScreen, PromptScreen
from .widgets import EventFilter, EventLog, LayerGraph, NeuronDetail, SupervisionTree, Vitals

REFRESH_S = 1.0


class NetworkCommands(Provider):
    """The actions, in the command palette."""

    async def search(self, query: str) -> Hits:
        app = self.app
        matcher = self.matcher(query)
        for name, action in (("Kill the selected neuron", app.action_kill), ("Add a neuron to the selected layer", app.action_add),
                             ("Remove the selected neuron", app.action_remove), ("Add a link", app.action_link),
                             ("Remove a link", app.action_unlink), ("Change the selected layer's settings", app.action_settings),
                             ("Pause / resume learning", app.action_pause), ("Export the topology", app.action_export)):
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), action)


class NeuroxApp(App):
    TITLE = "NeuroX"
    CSS_PATH = Path(__file__).with_name("neurox.tcss")  # absolute: a subclass elsewhere finds it too
    COMMANDS = App.COMMANDS | {NetworkCommands}
    BINDINGS = [("k", "kill", "kill"), ("a", "add", "add"), ("d", "remove", "drain"),
                ("l", "link", "link"), ("u", "unlink", "unlink"), ("s", "settings", "settings"),
                ("p", "pause", "pause"), ("x", "export", "export"), ("/", "filter", "filter"),
                ("q", "quit", "quit")]
    """Every key here is in docs/tui.md (a test checks); descriptions short enough for an 80-column footer."""

    def __init__(self, endpoints: Endpoints, data_dir: str = "."):
        super().__init__()
        self.observer = Observer(endpoints)
        self.data_dir = data_dir
        self.rows: dict[str, ProcessRow] = {}

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.poll_tree()
        self.follow_events()

    def on_unmount(self) -> None:
        self.workers.cancel_all()
        self.observer.close()

    # -- workers: network I/O, posting messages only ----------------------------------------------
    @work(exclusive=True, group="tree")
    async def poll_tree(self) -> None:
        while True:
            try:
                self.post_message(TreeSnapshot(await self.observer.snapshot()))
                self.post_message(ScalingState(await self.observer.scaling()))
            except ObserverError as exc:
                self.post_message(ObserverTrouble(str(exc)))
            await asyncio.sleep(REFRESH_S)

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        async for event in self.observer.events():
            self.post_message(NetworkEvent(event))

    # -- messages -> widgets ----------------------------------------------------------------------
    def _shown(self) -> MainScreen | None:
        """The main screen while it is shown whole: None on another screen, or while it is taken down at the
        end (a worker's last message can be handled after its widgets are gone: nothing to show it on)."""
        screen = self.screen
        if not isinstance(screen, MainScreen):
            return None
        try:
            screen.query_one(SupervisionTree)
        except NoMatches:
            return None
        return screen

    def on_tree_snapshot(self, message: TreeSnapshot) -> None:
        self.rows = {row.path: row for row in message.rows}
        screen = self._shown()
        if screen is None:
            return
        screen.query_one(SupervisionTree).show(message.rows)
        screen.query_one(LayerGraph).show(message.rows)
        screen.query_one(Vitals).show(message.rows)
        screen.query_one(NeuronDetail).show(self.selected())
        neurons = [r for r in message.rows if r.is_neuron]
        paused = sum(learning_state(r.status) != "learning" for r in neurons)
        self.sub_title = f"{len(neurons)} neurons" + (f", {paused} not learning" if paused else "")

    def on_scaling_state(self, message: ScalingState) -> None:
        screen = self._shown()
        if screen is not None:
            screen.query_one(Vitals).show_scaling(message.answer)

    def on_network_event(self, message: NetworkEvent) -> None:
        screen = self._shown()
        if screen is None:
            return
        screen.query_one(EventLog).add(message.event)
        screen.query_one(LayerGraph).note_event(message.event)
        if message.event.get("event") == "child_restarted":
            screen.query_one(Vitals).note_restart()

    def on_observer_trouble(self, message: ObserverTrouble) -> None:
        self.notify(message.text, severity="warning", timeout=3)

    def on_tree_node_highlighted(self, message: Tree.NodeHighlighted) -> None:
        self.screen.query_one(NeuronDetail).show(self.selected())

    # -- actions ------------------------------------------------------------------------------------
    def selected(self) -> ProcessRow | None:
        if not isinstance(self.screen, MainScreen):
            return None
        node = self.screen.query_one(SupervisionTree).cursor_node
        return self.rows.get(node.data) if node is not None and node.data else None

    def _neuron_or_warn(self) -> ProcessRow | None:
        row = self.selected()
        if row is None or not row.is_neuron:
            self.notify("select a neuron in the tree first", severity="warning")
            return None
        return row

    def action_kill(self) -> None:
        if self.observer.remote:
            self.notify("kill sends a signal on this machine; a remote host's neurons cannot be killed from here",
                        severity="warning")
            return
        row = self._neuron_or_warn()
        if row is not None and isinstance(row.pid, int):
            self.push_screen(ConfirmScreen(f"Kill neuron {row.name} (pid {row.pid}) with SIGKILL? "
                                           "Its supervisor starts a replacement."), partial(self._kill, row))

    def _kill(self, row: ProcessRow, yes: bool | None) -> None:
        if not yes:
            return
        try:
            self.observer.kill(row.pid)
        except ProcessLookupError:
            self.notify(f"{row.name} (pid {row.pid}) had already gone", severity="warning")
            return
        self.notify(f"killed {row.name} (pid {row.pid}); its supervisor replaces it")

    def selected_layer(self) -> str | None:
        """The layer of the selected neuron or layer supervisor; None (and a warning) for anything else."""
        row = self.selected()
        layer = layer_of(row, list(self.rows.values())) if row is not None else None
        if layer is None:
            self.notify("select a layer or a neuron first", severity="warning")
        return layer

    def action_add(self) -> None:
        layer = self.selected_layer()
        if layer is not None:
            self.run_reshape("add_neuron", layer=layer)

    def action_remove(self) -> None:
        row = self._neuron_or_warn()
        if row is not None:
            self.push_screen(ConfirmScreen(f"Drain neuron {row.name} and remove it from layer {row.neuron_layer}?"),
                             lambda yes: yes and self.run_reshape("remove_neuron", id=row.name))

    def action_link(self) -> None:
        self.push_screen(PromptScreen("Add a link (forward only): FROM TO", "L1.n0 L3.n1"),
                         partial(self._link, "add_link"))

    def action_unlink(self) -> None:
        self.push_screen(PromptScreen("Remove a link: FROM TO", "L1.n0 L2.n1"), partial(self._link, "remove_link"))

    def _link(self, op: str, text: str | None) -> None:
        ends = (text or "").split()
        if len(ends) == 2:
            self.run_reshape(op, **{"from": ends[0], "to": ends[1]})
        elif text:
            self.notify("give two neuron ids: FROM TO", severity="warning")

    def action_settings(self) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        self.push_screen(PromptScreen(f"Settings for layer {layer}: KEY=VALUE ...",
                                      "learning_rate=0.02 flush_interval_s=5"), partial(self._settings, layer))

    def _settings(self, layer: str, text: str | None) -> None:
        settings = {}
        for pair in (text or "").split():
            key, _, value = pair.partition("=")
            try:
                settings[key] = float(value) if key != "activation" else value
            except ValueError:
                self.notify(f"{pair}: expected KEY=NUMBER (or activation=NAME)", severity="warning")
                return
        if settings:
            self.run_reshape("set_settings", layer=layer, settings=settings)

    def action_pause(self) -> None:
        """Pause learning if any neuron learns, else resume it (the network says which, not a toggle kept here)."""
        learning = any(r.status.get("learning", True) for r in self.rows.values() if r.is_neuron)
        self.run_reshape("set_learning", learning=not learning)

    def action_export(self) -> None:
        self.run_reshape("export")

    def action_filter(self) -> None:
        self.screen.query_one(EventFilter).focus()

    @work(group="reshape")
    async def run_reshape(self, op: str, **args) -> None:
        try:
            result = await self.observer.reshape(op, **args)
        except ObserverError as exc:
            self.notify(f"Could not {describe_attempt(op, args)}: {exc}", severity="error")
            return
        if op == "export":
            path = os.path.join(self.data_dir, "exported-topology.toml")
            os.makedirs(self.data_dir, exist_ok=True)
            with open(path, "w") as f:
                f.write(result)
            self.notify(f"topology written to {path}")
        else:
            self.notify(describe_reshape(op, result))
