"""The neuron process: a kind of ``runtime.Process`` whose callbacks wire its parts (docs/neuron.md).

Forward parts of a packet are joined by id (``_joins``) over the links (``_links``); when every
input has arrived -- or the join deadline passes -- the neuron computes its outputs at the gain its
receptors sense (``_receptors``) and sends them on, one frame per link for all that is ready at once.
Its ``LearningRule`` (``_learning_rule``) learns at the forward pass (local rules), from each
packet's gradient (backprop; the end neuron makes the first from the targets), or from dopamine.
``Persistence`` (``_persistence``) gives its first weights and writes them behind; ``_requests``
checks what the control API is asked. Data-plane frames are in ``_frames``.
"""
from __future__ import annotations

import os
import time

import numpy as np
import zmq
from msgspec import UNSET

from ..runtime import (BadFrames, ExitReason, Process, ipc_endpoint, keep_heap, make_socket, pack, rss_bytes,
                       typed_ops)
from . import _frames as frames
from ._endpoints import inbox_endpoint, neuron_control, topology_path
from ._learning_rule import make_rule
from ._links import Links, relayout
from ._init import init_of
from ._math import before_fork as before_fork  # the launcher warms numpy up with it (a preloaded module)
from ._math import initial_weights, link_rms, weight_statistics
from ._modulation import DEFAULT_TRANSMITTER
from ._ops import NEURON_ARGS, AddLink, Inject, Journal, RemoveLink, SetParams, SetState, Tap
from ._persistence import Persistence, sibling_weights, twin_weights
from ._joins import Run
from ._pipeline import Pipeline
from ._plasticity import DEFAULT_PLASTICITY
from ._receptors import open_receptors
from ._returns import Returns
from ._requests import SETTABLE, checked_set_params, checked_vector
from ._staleness import DEFAULT_GROUP, DEFAULT_RULE as DEFAULT_STALENESS
from ._state import params_checksum
from ._states import flush_interval
from ._live_topology import load_live_topology
from ._topology import Topology

COUNTERS = ("forwards", "samples", "backwards", "updates", "missed_inputs", "missed_gradients", "late", "expired",
            "dropped_sends", "flush_errors", "refused_updates", "clipped_updates", "non_finite_inputs",
            "forward_bundles", "backward_bundles", "returned", "dropped_returns", "no_origin")
HEAP_KEPT = 8 << 20
"""Freed heap (bytes) a neuron keeps for its next bundle instead of giving it back to the kernel: a batched
bundle's temporaries are 128 KiB and more, and mapping them afresh each time costs page faults
(``runtime.keep_heap``); an idle neuron never frees that much, so it costs it nothing."""
REPORT_INTERVAL_S = 1.0
"""How often a neuron publishes its status and metrics as a ``neuron_report`` event (the first at once in a
network of up to 100 neurons: :func:`first_report_s`)."""
NETWORK_REPORTS_PER_S = 100.0
"""The most reports a second all the neurons of a network send together (see :func:`report_interval_s`)."""
DRAIN_BATCH = 512
"""The most messages taken from one socket per wake-up (the rest wait for the next)."""
REFUSAL_EVENT_INTERVAL_S = 1.0
"""At most one ``update_refused`` event per this many seconds (every refusal is counted)."""


class Neuron(Process):
    """One neuron: set up by ``init``, then driven by the process behaviour through the callbacks."""

    target = "neurox.neuron._process:run_neuron"
    CALLS = ("status", "metrics", "get_params", "set_params", "add_link", "remove_link", "snapshot",
             "tap", "inject", "set_state", "journal")

    def init(self, args: dict, env: dict) -> dict:
        self.id, self.data_dir, self.run_dir = args["neuron"], args["data_dir"], env["run_dir"]
        keep_heap(HEAP_KEPT)
        self.twin_of = args.get("twin_of")
        """A twin in the maintenance pool: the control endpoint of the working neuron it copies. It lives
        in its own data plane (``plane_dir``) and DB (``store_dir``), and reports to no modulator."""
        self.plane_dir, self.started_t = args.get("plane_dir", self.run_dir), time.time()
        topology = load_live_topology(topology_path(self.data_dir))  # parsed in the launcher (before_spawn)
        settings = topology.settings_of(self.id)
        self.layer, self.units, self.policy = settings["layer"], int(settings["units"]), settings["policy"]
        self.settings = {k: settings[k] for k in SETTABLE}
        self.transmitter = settings.get("transmitter", DEFAULT_TRANSMITTER)
        self.plasticity, self.init = settings.get("plasticity", DEFAULT_PLASTICITY), init_of(settings)
        self.counters, self.rng = dict.fromkeys(COUNTERS, 0), np.random.default_rng()
        self.bad = BadFrames(f"neuron {self.id}")
        self.handlers.update(typed_ops(NEURON_ARGS, {op: getattr(self, f"call_{op}") for op in self.CALLS}))
        self.links = Links(self.id, self._connect, self.counters)
        self.links.set_inputs([(src, topology.width_of(src)) for src in topology.inputs_of(self.id)])
        for dst in topology.outputs_of(self.id):
            self.links.add_output(dst)
        self.persistence = Persistence(os.path.join(args.get("store_dir", self.data_dir), "neurons", self.id),
                                       self.id, self.events, self.counters)
        first = np.random.default_rng([topology.seed, *self.id.encode()])
        weights, bias, self.origin, saved = self.persistence.start(
            self.policy, bool(args.get("seed_from_siblings")), (self.links.fan_in, self.units), self.rng,
            fresh=lambda: initial_weights(self.links.fan_in, self.units, first, self.init), relay=self._relay,
            siblings=lambda: sibling_weights(self.ctx, {s: neuron_control(self.run_dir, topology, s)
                                                        for s in topology.siblings_of(self.id)}),
            twin=None if self.twin_of is None else lambda: twin_weights(self.ctx, self.twin_of, self._relay),
            init=self.init, after_crash=env.get("after") == "crash")
        if saved is not None:
            self.settings.update(saved.settings.get("overrides", {}))
            self.counters.update({k: v for k, v in saved.counters.items() if k in self.counters})
            self.persistence.flushed_updates = self.counters["updates"]
        staleness = {"staleness": settings.get("staleness", DEFAULT_STALENESS),
                     "group": settings.get("staleness_group", DEFAULT_GROUP)} if self.plasticity == "backprop" else {}
        self.rule = make_rule(self.plasticity, weights, bias, self.counters, self.rng, self._refused, **staleness)
        self.receptors = open_receptors(self.ctx, self.run_dir, topology, self.id, self.transmitter, self.twin_of is None)
        # a twin's answers (to dreams) go to its pool, not to origins
        returns = None if self.twin_of else Returns(self.ctx, self.counters, self.bad, topology.output)
        self.pipeline = Pipeline(self.id, self.units, self.links, self.rule, self.receptors, self.settings, self.counters,
                                 self.bad, float(settings.get("context", 0.0)), returns)
        self.pipeline.frozen = bool(args.get("frozen", False))
        self.inbox = make_socket(self.ctx, zmq.PULL, bind=inbox_endpoint(self.plane_dir, self.id))
        if self.receptors.socket is not None:  # levels first: dopamine for earlier passes before new tags
            self.watch(self.receptors.socket, DRAIN_BATCH, multipart=True)
        self.watch(self.inbox, DRAIN_BATCH)
        self.persistence.next_flush = time.monotonic() + self._flush_interval()
        self.report_interval_s = report_interval_s(topology.neuron_count)
        self.next_report = time.monotonic() + first_report_s(self.report_interval_s, float(self.rng.random()))
        self.next_refusal_event, self.injected = 0.0, 0
        self._weights_seen: tuple | None = None
        return {"neuron": self.id, "layer": self.layer, **self.origin}

    def _connect(self, peer: str) -> zmq.Socket:
        return make_socket(self.ctx, zmq.PUSH, connect=inbox_endpoint(self.plane_dir, peer))

    def _relay(self, weights: np.ndarray, layout: list | None) -> np.ndarray:
        """Weights laid out for ``layout`` (None: the current inputs), re-laid for the current inputs."""
        return relayout(weights, self.links.layout if layout is None else layout, self.links.layout,
                        lambda width: initial_weights(width, self.units, self.rng, self.init)[0])

    def _refused(self, reason: str) -> None:
        """An update refused by the rule (counted there): an event, at most one a second."""
        now = time.monotonic()
        if now >= self.next_refusal_event:
            self.next_refusal_event = now + REFUSAL_EVENT_INTERVAL_S
            self.events.emit("update_refused", id=self.id, reason=reason, refused=self.counters["refused_updates"])

    # -- the data plane: handle_frame (``_pipeline``) ----------------------------------------------------
    def handle_frame(self, sock: zmq.Socket, batch: list) -> None:
        if sock is self.inbox:
            self.pipeline.handle(batch)
            return
        for rpe, state in self.receptors.take(batch, self.bad):
            if rpe is not None:
                self.pipeline.reward(rpe, time.monotonic())
            if state is not None:
                self._set_state(state, "region")

    # -- the control API: ``handlers`` (op -> call_<op>) -------------------------------------------------
    def call_status(self, _request=None) -> dict:
        return {"id": self.id, "layer": self.layer, "pid": os.getpid(), "units": self.units, **self.links.status(),
                "policy": self.policy, "learning": self.pipeline.learning, "frozen": self.pipeline.frozen,
                "twin_of": self.twin_of, "uptime_s": time.time() - self.started_t, "started": self.origin,
                **self.settings, **self.persistence.status(), **self.receptors.status(), "transmitter": self.transmitter,
                "plasticity": self.plasticity, "effective_flush_interval_s": self._flush_interval(),
                "report_interval_s": self.report_interval_s}

    def call_metrics(self, _request=None) -> dict:
        pipeline = self.pipeline
        return {**self.counters, **self.bad.counts(),
                "pending_joins": len(pipeline.joins), "pending_gradients": len(pipeline.grads), "kept": self.rule.kept,
                "rss_bytes": rss_bytes(), "state": self.receptors.state, "neuromodulators": self.receptors.chemistry(),
                "activity": pipeline.activity.snapshot(), "persistence": self.persistence.status()["persistence"],
                **self._weight_figures(), "processing": pipeline.processing.to_dict()}

    def _weight_figures(self) -> dict:
        """``weights`` (statistics) and ``link_rms`` of the metrics, computed again only when the weights
        changed: new weights, an update (every rule counts its updates: persistence relies on it too) or
        new inputs. A tenth of a millisecond in every report otherwise, a stall a request in flight waits out."""
        weights, updates, layout = self.rule.weights, self.counters["updates"], list(self.links.layout)
        cached = self._weights_seen
        if cached is None or cached[0] is not weights or cached[1] != updates or cached[2] != layout:
            figures = {"weights": weight_statistics(weights), "link_rms": link_rms(weights, layout)}
            self._weights_seen = cached = (weights, updates, layout, figures)
        return cached[3]

    def call_get_params(self, _request) -> dict:
        return {"weights": frames.array_to_wire(self.rule.weights), "bias": frames.array_to_wire(self.rule.bias),
                "inputs": [p for p, _ in self.links.layout], "widths": dict(self.links.layout),
                "learning_rate": self.settings["learning_rate"], "uptime_s": time.time() - self.started_t}

    def call_set_params(self, request: SetParams) -> dict:
        self.rule.weights, self.rule.bias, settings, flags = checked_set_params(request, self.rule.weights, self.rule.bias)
        self.settings.update(settings)
        for flag, value in flags.items():
            setattr(self.pipeline, flag, value)
        self.persistence.next_flush = min(self.persistence.next_flush, time.monotonic() + self._flush_interval())
        self.persistence.mark()
        return self.call_status()

    def call_add_link(self, request: AddLink) -> dict:
        direction, peer = self.links.check_change(request, adding=True)
        if direction == "in":
            self.pipeline.set_inputs([*self.links.layout, (peer, request.width)], self._relay)
        else:
            self.pipeline.add_output(peer)
        self.persistence.mark()
        return self.links.status()

    def call_remove_link(self, request: RemoveLink) -> dict:
        direction, peer = self.links.check_change(request, adding=False)
        if direction == "in":
            self.pipeline.set_inputs([(p, w) for p, w in self.links.layout if p != peer], self._relay)
        else:
            self.pipeline.remove_output(peer)
        self.persistence.mark()
        return self.links.status()

    def call_tap(self, request: Tap) -> dict:
        """Mirror every frame this neuron sends on a PUB socket, topic ``<dst>`` (``neurox probe tap``)."""
        endpoint = ipc_endpoint(self.plane_dir, f"{self.id}.tap")
        if not request.on:
            self.links.set_tap(None)
            return {"endpoint": None}
        if self.links.tap is None:
            self.links.set_tap(make_socket(self.ctx, zmq.PUB, bind=endpoint, hwm=1000, linger_ms=0))
        return {"endpoint": endpoint}

    def call_inject(self, request: Inject) -> dict:
        """Compute on a given input vector and send the result on, as if it came from upstream: an inference
        packet (a probe: the held context stays) whose answer reaches ``origin``, if given, through MessengerOut."""
        x = checked_vector(request.vector, self.links.fan_in, self.id)
        self.injected += 1
        packet = (0xFFFF << 40) | (os.getpid() << 16 & 0xFFFFFF0000) | (self.injected & 0xFFFF)
        meta = pack({} if request.origin is None else {"origin": request.origin})
        run = Run([packet], x, [x.shape[0]], [False], [meta])
        return {"packet": packet, "output": self.pipeline.compute([run], hold=False).value[0].tolist()}

    def call_journal(self, request: Journal) -> dict:
        """``on`` true: record every bundle from now (a fresh journal); false: stop. The journal so far (see
        ``Pipeline.journal``): what the one-process reference replays to check this neuron's arithmetic."""
        pipeline = self.pipeline
        entries, truncated = pipeline.journal or [], pipeline.journal_truncated
        if request.on is not UNSET:
            pipeline.journal, pipeline.journal_truncated = ([] if request.on else None), False
        return {"entries": entries, "truncated": truncated, "recording": pipeline.journal is not None}

    def call_snapshot(self, _request) -> dict:
        self.persistence.flush(self._state, self._flush_interval(), sync=True)
        status = self.persistence.status()
        return {key: status[key] for key in ("flushes", "last_flush_t", "persistence")}

    def call_set_state(self, request: SetState) -> dict:
        """By hand: this neuron's state until the next change (by hand, or of its region's state)."""
        self._set_state(request.state, "manual")
        return {"state": self.receptors.state, "state_source": self.receptors.state_source,
                "effective_flush_interval_s": self._flush_interval()}

    def _set_state(self, state: str, source: str) -> None:
        if self.receptors.set_state(state, source):
            self.persistence.next_flush = min(self.persistence.next_flush, time.monotonic() + self._flush_interval())
            self.events.emit("neuron_state", id=self.id, state=state, source=source, flush_interval_s=self._flush_interval())

    # -- timers and the end: handle_timer, terminate ---------------------------------------------------
    def handle_timer(self, now: float) -> float:
        """Overdue joins and passes (``_pipeline``), the report, the flush, the modulator's report; the next
        deadline (a flush only with something to write: an idle neuron of a large network sleeps)."""
        due, persistence, receptors = self.pipeline.expire(now), self.persistence, self.receptors
        if now >= self.next_report:
            self.next_report = now + self.report_interval_s
            if self.twin_of is None:  # a twin's figures are not the network's: its working neuron reports
                self.events.emit("neuron_report", id=self.id, status=self.call_status(), metrics=self.call_metrics())
        if now >= persistence.next_flush:
            persistence.flush(self._state, self._flush_interval())
        receptors.report(now)
        deadline = self.next_report  # the earliest of the others that are set (run every round: no generator)
        for other in (due, receptors.next_report, persistence.next_flush if persistence.dirty else None):
            if other is not None and other < deadline:
                deadline = other
        return deadline

    def _state(self) -> tuple:
        """What a flush writes: weights, bias, settings (the input layout the weights are for), counters."""
        settings = {"inputs": [p for p, _ in self.links.layout], "widths": dict(self.links.layout), "units": self.units,
                    "overrides": self.settings}
        return self.rule.weights, self.rule.bias, settings, self.counters

    def _flush_interval(self) -> float:
        return flush_interval(self.receptors.state, self.settings["flush_interval_s"])

    def terminate(self, reason: ExitReason) -> None:
        """A polite stop flushes synchronously and marks the DB clean; ``neuron_stopped`` carries the checksum
        of the weights in memory, so anyone can check the next start gets exactly them back. After a crash
        the DB is closed as it is (the next start knows it was not a polite stop)."""
        clean = reason.kind == "shutdown"
        if clean:
            self.persistence.flush(self._state, self._flush_interval(), sync=True)
            clean = not self.persistence.dirty
            self.events.emit("neuron_stopped", id=self.id, checksum=params_checksum(self.rule.weights, self.rule.bias),
                             flushed=clean, flushes=self.persistence.status()["flushes"])
        self.persistence.close(clean)
        self.receptors.close()


def report_interval_s(neurons: int) -> float:
    """Seconds between a neuron's reports in a network of ``neurons``: every second up to 100 neurons, then as
    often as keeps the network at NETWORK_REPORTS_PER_S. A report costs its neuron a wake-up and a quarter of a
    millisecond of numpy, plus the bus's and the service's share; a thousand neurons reporting every second
    kept both cores of a small host busy, and took most of their start time."""
    return max(REPORT_INTERVAL_S, neurons / NETWORK_REPORTS_PER_S)


def first_report_s(interval_s: float, draw: float) -> float:
    """Seconds from ready to a neuron's first report, ``draw`` uniform in [0, 1): at once where reports come
    every second (a network of up to 100 neurons), else after between half and all of the interval. The
    first report is 1.3-1.9 ms of a neuron's CPU (the weight histogram), a quarter of its start; sent at
    once, a thousand of them competed with the start they report on and then came in the start's rhythm."""
    return 0.0 if interval_s <= REPORT_INTERVAL_S else interval_s * (1.0 - draw / 2)


def run_neuron(args: dict, env: dict) -> None:
    """Process entry point of a neuron (``neurox.neuron._network.NEURON_TARGET``). numpy's floating-point
    warnings are off: what is not finite is refused, counted and reported by the neuron itself."""
    np.seterr(all="ignore")
    Neuron.main(args, env)


_inherited: dict[str, Topology] = {}


def _parse_topology_in_launcher(args: dict) -> bool:
    """Run by the launcher before it forks a neuron: the live topology, parsed there once per version, is
    inherited by every neuron forked after it (see ``load_live_topology``). True: a new version."""
    path = topology_path(args["data_dir"])
    topology = load_live_topology(path)
    new = _inherited.get(path) is not topology
    _inherited[path] = topology
    return new


run_neuron.before_spawn = _parse_topology_in_launcher
