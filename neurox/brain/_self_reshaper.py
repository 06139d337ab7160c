"""The self-reshaper: a worker that watches its network and changes its shape while it learns.

Every ``interval_s`` it reads each neuron's metrics (activity, saturation, the end's loss) and
parameters (the RMS of each incoming link), asks the pure policy in ``_shaping`` what to change, and
makes the changes through the reshaper (``root/reshaper``), exactly as a person would with
``neurox reshape``. Each change, done or refused, is an event ``self_reshaped`` on the bus. It runs
only when the topology has a ``[self_reshaping]`` table.
"""
from __future__ import annotations

import os
import time

import msgspec
import numpy as np

from ..runtime import ControlClient, ControlError, Process
from ..supervisor_tree import control_endpoint
from ..neuron import Part, Reshaping, Topology, array_from_wire, front_only, neuron_control, topology_path
from ._shaping import Action, NeuronView, ShapingConfig, decide_links, decide_neurons, link_rms, silent_streaks

CALL_TIMEOUT_S = 2.0
HISTORY = 50
"""Rounds of loss and changes kept for ``status``."""


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


class SelfReshaper(Process):
    """A callback module of the process behaviour: one round per ``interval_s`` (``handle_timer``)."""

    target = "neurox.brain._self_reshaper:run_self_reshaper"

    def init(self, args: dict, env: dict) -> dict:
        self.data_dir = args["data_dir"]
        self.run_dir = env["run_dir"]
        self.config = ShapingConfig.from_table(Topology.load(topology_path(self.data_dir)).self_reshaping or {})
        self.reshaping = Reshaping(control_endpoint(self.run_dir, "root/reshaper"), self.ctx)
        self.rng = np.random.default_rng(0)
        self.losses: list[float] = []
        self.streaks: dict[str, int] = {}
        self.changes: list[dict] = []
        self.rounds = 0
        self.next_round = time.monotonic() + self.config.interval_s
        self.handlers.update({"status": lambda r: self.status(), "round": lambda r: self.round()})
        return {}

    def handle_timer(self, now: float) -> float:
        if now >= self.next_round:
            self.round()
            self.next_round = time.monotonic() + self.config.interval_s
        return self.next_round

    def status(self) -> dict:
        return {"pid": os.getpid(), "rounds": self.rounds, "config": msgspec.structs.asdict(self.config),
                "losses": self.losses[-HISTORY:], "changes": self.changes[-HISTORY:]}

    # -- one round: observe, decide, act -----------------------------------------------------
    def round(self) -> list[dict]:
        """Observe the network, decide by the policy, make the changes; returns what was done."""
        self.rounds += 1
        topology = Topology.load(topology_path(self.data_dir), validate=False)
        views, loss = self._observe(topology)
        if loss is not None:
            self.losses = (self.losses + [loss])[-HISTORY:]
        self.streaks = silent_streaks(self.streaks, views, self.config.silence)
        layers = [(layer.name, list(layer.neurons)) for layer in topology.layers]
        widths = {layer.name: topology.width_of(layer.neurons[0]) for layer in topology.layers if layer.neurons}
        actions = decide_neurons(self.config, layers[1:-1], views, self.losses, self.streaks, widths,
                                 topology.width_of(topology.layers[-1].neurons[0]))
        actions += decide_links(self.config, layers, views, topology.links, self.rng)
        done = [self._apply(action) for action in actions]
        if any(d["ok"] and d["op"] in ("add_neuron", "remove_neuron") for d in done):
            self.losses = self.losses[-1:]  # a new shape: the next plateau is measured from here
        return done

    def _observe(self, topology: Topology) -> tuple[list[NeuronView], float | None]:
        views, loss = [], None
        end = topology.layers[-1].neurons[0]
        for layer in topology.layers:
            for neuron in layer.neurons:
                with ControlClient(self.ctx, neuron_control(self.run_dir, topology, neuron), CALL_TIMEOUT_S) as client:
                    try:
                        metrics, params = client.call("metrics"), client.call("get_params")
                    except ControlError:
                        continue  # dead or busy this round: decided on next round
                activity = metrics.get("activity", {})
                if neuron == end:
                    loss = activity.get("loss")
                if activity.get("mean_abs") is None:
                    continue  # nothing computed yet: nothing to judge it by
                weights = array_from_wire(params["weights"])
                views.append(NeuronView(neuron, layer.name, activity["mean_abs"], activity["saturation"],
                                        link_rms(weights, params["inputs"], params["widths"])))
        return views, loss

    def _apply(self, action: Action) -> dict:
        call = {"add_neuron": lambda: self.reshaping.add_neuron(action.target[0]),
                "remove_neuron": lambda: self.reshaping.remove_neuron(action.target[0]),
                "add_link": lambda: self.reshaping.add_link(*action.target),
                "remove_link": lambda: self.reshaping.remove_link(*action.target)}[action.op]
        change = {"t": time.time(), "op": action.op, "target": list(action.target), "reason": action.reason}
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
