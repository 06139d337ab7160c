"""The self-reshaper: a worker that watches its network and changes its shape while it learns.

It reads the event bus, not the neurons: every neuron publishes a ``neuron_report`` each second or so
(its metrics: activity, saturation, the end's loss, each incoming link's RMS), and the self-reshaper
keeps the last one of each. Every ``interval_samples`` samples the end has learnt (its report's counters),
or every ``interval_s`` if that is not set, it asks the pure policy in ``_shaping`` what to change from
those reports, and makes the changes through the reshaper (``root/reshaper``), exactly as a person
would with ``neurox reshape``. It calls a neuron itself only when no report of it has come (a neuron
on another host, whose reports go to that host's bus). While the network sleeps (between the
``maintenance_started`` and ``maintenance_ended`` events) it changes nothing: a neuron reshaped then
could not take back what its twin learnt. Each change, done or refused, is an event ``self_reshaped``
on the bus. It runs only when the topology has a ``[self_reshaping]`` table.
"""
from __future__ import annotations

import os
import time
from collections import Counter

import msgspec
import numpy as np
import zmq

from ..runtime import EVENT_HWM, ControlClient, ControlError, FrameError, Process, ipc_endpoint, make_socket, unpack_map
from ..supervisor_tree import control_endpoint
from ..neuron import Part, Reshaping, Topology, front_only, neuron_control, topology_path
from ._shaping import (Action, NeuronView, ShapingConfig, decide_links, decide_neurons, decide_start, learnt_between,
                       recovered, round_due, round_mark, silent_streaks)

CALL_TIMEOUT_S = 2.0
HISTORY = 50
"""Rounds of loss and changes kept for ``status``."""
TOPICS = (b"neuron_report", b"maintenance_started", b"maintenance_ended")
WAIT_S = 0.2
"""How often a round that is due looks again for the end's next report."""
EVENTS_DRAIN = 1000
"""Events read per wake-up at most before the control socket gets its turn."""


def self_reshaper_children(topology: Topology, data_dir: str) -> list[dict]:
    """The self-reshaper as a child of the network's root, if the topology asks for one."""
    if topology.self_reshaping is None:
        return []
    return [SelfReshaper.child_spec("self_reshaper", {"data_dir": data_dir})]


def check_shaping(topology: Topology) -> None:
    if topology.self_reshaping is not None:
        ShapingConfig.from_table(topology.self_reshaping)


SHAPING = Part("shaping", sections=("self_reshaping",), schemas={"self_reshaping": ShapingConfig}, check=check_shaping,
               children=front_only(self_reshaper_children), reserves=("self_reshaper",))
"""The self-reshaper, if the topology has a ``[self_reshaping]`` table (docs/brain.md)."""


def view_of(neuron: str, layer: str, metrics: dict) -> NeuronView | None:
    """What a neuron's metrics say about it; None before it has computed anything."""
    activity = metrics.get("activity", {})
    if activity.get("mean_abs") is None:
        return None
    return NeuronView(neuron, layer, activity["mean_abs"], activity["saturation"], dict(metrics.get("link_rms", {})))


class SelfReshaper(Process):
    """A callback module of the process behaviour: the bus's reports in (``handle_frame``), one round per
    ``interval_samples`` learnt or ``interval_s`` (``handle_timer``)."""

    target = "neurox.brain._self_reshaper:run_self_reshaper"

    def init(self, args: dict, env: dict) -> dict:
        self.data_dir = args["data_dir"]
        self.run_dir = env["run_dir"]
        topology = Topology.load(topology_path(self.data_dir))
        self.config = ShapingConfig.from_table(topology.self_reshaping or {})
        self.end = topology.layers[-1].neurons[0]
        """The end node (never added to or removed): its loss and its counters pace the rounds."""
        self.reshaping = Reshaping(control_endpoint(self.run_dir, "root/reshaper"), self.ctx)
        self.bus = make_socket(self.ctx, zmq.SUB, connect=ipc_endpoint(self.run_dir, "events.pub"), hwm=EVENT_HWM)
        for topic in TOPICS:
            self.bus.setsockopt(zmq.SUBSCRIBE, topic)
        self.watch(self.bus)
        self.reports: dict[str, dict] = {}
        """Each neuron's metrics, from its last ``neuron_report``."""
        self.fresh: set[str] = set()
        """The neurons that reported since the last round."""
        self.asleep = False
        self.rng = np.random.default_rng(0)
        self.losses: list[float] = []
        self.streaks: dict[str, int] = {}
        self.recovered_below: float | None = None
        """After a shrink, the loss to get back under before the next one (``recovered``)."""
        self.changes: list[dict] = []
        self.counters = {"rounds": 0, "reports": 0, "calls": 0, "asleep_rounds": 0}
        self.reports_by_neuron: Counter[str] = Counter()
        self.end_counts: tuple[int, int] | None = None
        """The end's ``(samples, updates)`` counters in its last report."""
        self.learnt = 0
        """Samples the end has learnt, by its reports' counters (``learnt_between``)."""
        self.mark, self.last_round = 0, time.monotonic()
        """Where ``learnt`` counts from to the next round (``round_mark``), and the time of the last round."""
        self.handlers.update({"status": lambda r: self.status(), "round": lambda r: self.round()})
        return {}

    def handle_frame(self, source, frames) -> None:
        self._read_bus()

    def handle_timer(self, now: float) -> float | None:
        """A round when ``round_due``: counted in samples, looked at after every report read (no deadline);
        timed, at each ``interval_s`` and then every ``WAIT_S`` until the end has reported anew."""
        elapsed = now - self.last_round
        if round_due(self.config, self.learnt - self.mark, elapsed, self._end_reported()):
            self.round()
            elapsed = 0.0
        if self.config.interval_samples is not None:
            return None
        return now + max(self.config.interval_s - elapsed, WAIT_S)

    def status(self) -> dict:
        self._read_bus()  # what has come on the bus counts, even if the loop has not read it yet
        return {"pid": os.getpid(), **self.counters, "learnt": self.learnt,
                "reports_by_neuron": dict(self.reports_by_neuron),
                "asleep": self.asleep, "config": msgspec.structs.asdict(self.config),
                "losses": self.losses[-HISTORY:], "changes": self.changes[-HISTORY:]}

    def _end_reported(self) -> bool:
        self._read_bus()
        return self.end in self.fresh or self.end not in self.reports

    def _read_bus(self) -> None:
        """Every event waiting: keep the reports, follow the network's sleep."""
        for _ in range(EVENTS_DRAIN):
            try:
                topic, body = self.bus.recv_multipart(zmq.NOBLOCK)
                event = unpack_map(body)
            except zmq.Again:
                return
            except (FrameError, ValueError):
                continue  # the bus forwards what publishers send; a bad one is not ours to fix
            if topic == b"neuron_report" and isinstance(event.get("metrics"), dict):
                self.reports[str(event.get("id"))] = event["metrics"]
                if event.get("id") == self.end:
                    self._count_learnt(event["metrics"])
                self.fresh.add(str(event.get("id")))
                self.counters["reports"] += 1
                self.reports_by_neuron[str(event.get("id"))] += 1
            elif topic in (b"maintenance_started", b"maintenance_ended"):
                self.asleep = topic == b"maintenance_started"

    def _count_learnt(self, metrics: dict) -> None:
        counts = metrics.get("samples"), metrics.get("updates")
        if all(isinstance(c, int) for c in counts):
            self.learnt += learnt_between(self.end_counts, counts)
            self.end_counts = counts

    # -- one round: observe, decide, act -----------------------------------------------------
    def round(self) -> list[dict]:
        """Decide by the policy from the latest reports and make the changes; returns what was done."""
        self._read_bus()
        self.counters["rounds"] += 1
        self.mark = round_mark(self.mark, self.learnt, self.config.interval_samples)
        self.last_round = time.monotonic()
        if self.asleep:
            self.counters["asleep_rounds"] += 1
            return []
        topology = Topology.load(topology_path(self.data_dir), validate=False)
        views, loss = self._observe(topology)
        if topology.layers[-1].neurons[0] not in self.fresh:
            loss = None  # no news of the loss since the last round
        self.fresh = set()
        if loss is not None:
            self.losses = (self.losses + [loss])[-HISTORY:]
        self.streaks = silent_streaks(self.streaks, views, self.config.silence)
        layers = [(layer.name, list(layer.neurons)) for layer in topology.layers]
        widths = {layer.name: topology.width_of(layer.neurons[0]) for layer in topology.layers if layer.neurons}
        needed = topology.width_of(topology.layers[-1].neurons[0])
        actions = decide_start(layers[0][0], widths[layers[0][0]], needed) if len(layers) > 1 else []
        actions += decide_neurons(self.config, layers[1:-1], views, self.losses, self.streaks, widths,
                                 needed, self.recovered_below)
        actions += decide_links(self.config, layers, views, topology.links, self.rng)
        done = [self._apply(action) for action in actions]
        if any(d["ok"] and d["op"] in ("add_neuron", "remove_neuron", "widen_layer") for d in done):
            self.losses = self.losses[-1:]  # a new shape: the next plateau is measured from here
        if any(d["ok"] and d["op"] in ("add_neuron", "widen_layer") for d in done):
            self.recovered_below = None  # grown: a new start for shrinking
        elif self.losses and any(d["ok"] and d["op"] == "remove_neuron" and d["reason"].startswith("loss")
                                 for d in done):  # a shrink (the silent rule's reasons start "silent")
            self.recovered_below = recovered(self.losses[-1], self.config)
        return done

    def _observe(self, topology: Topology) -> tuple[list[NeuronView], float | None]:
        """Each neuron's view from its last report (asked directly only if none came), and the end's loss."""
        names = [n for layer in topology.layers for n in layer.neurons]
        self.reports = {n: m for n, m in self.reports.items() if n in names}  # removed ones are forgotten
        views, loss = [], None
        end = topology.layers[-1].neurons[0]
        for layer in topology.layers:
            for neuron in layer.neurons:
                metrics = self.reports.get(neuron) or self._ask(topology, neuron)
                if metrics is None:
                    continue  # dead or busy: decided on a later round
                if neuron == end:
                    loss = metrics.get("activity", {}).get("loss")
                view = view_of(neuron, layer.name, metrics)
                if view is not None:
                    views.append(view)
        return views, loss

    def _ask(self, topology: Topology, neuron: str) -> dict | None:
        """A neuron's metrics over its control socket, for one whose reports do not reach this bus."""
        self.counters["calls"] += 1
        with ControlClient(self.ctx, neuron_control(self.run_dir, topology, neuron), CALL_TIMEOUT_S) as client:
            try:
                return client.call("metrics")
            except ControlError:
                return None

    def _apply(self, action: Action) -> dict:
        call = {"add_neuron": lambda: self.reshaping.add_neuron(action.target[0]),
                "remove_neuron": lambda: self.reshaping.remove_neuron(action.target[0]),
                "add_link": lambda: self.reshaping.add_link(*action.target),
                "remove_link": lambda: self.reshaping.remove_link(*action.target),
                "widen_layer": lambda: self.reshaping.widen_layer(action.target[0], int(action.target[1]))}[action.op]
        change = {"t": time.time(), "samples": self.learnt, "op": action.op, "target": list(action.target),
                  "reason": action.reason}
        try:
            call()
            change["ok"] = True
        except ControlError as exc:  # e.g. the network changed meanwhile: refused, and said so
            change.update(ok=False, error=exc.error, detail=str(exc))
        self.changes = (self.changes + [change])[-HISTORY:]
        self.emit("self_reshaped", **change)
        return change


run_self_reshaper = SelfReshaper.main
"""Process entry point (``SelfReshaper.target``)."""
