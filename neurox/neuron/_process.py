"""The neuron process: a PULL inbox, a PUSH per link, a control socket, and its own LevelDB.

Forward parts of a packet are joined by packet id; when every input has arrived -- or the join
deadline passes, in which case missing inputs count as zeros and the miss is counted -- the neuron
computes its outputs and pushes them downstream. If the packet is for learning it keeps its input
and output until the gradients come back from downstream (joined the same way), updates its weights
and pushes the input gradients upstream. The end neuron turns outputs and targets into the first
gradient itself and hands its outputs to MessengerOut. Data-plane frames are in ``_frames``.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections import OrderedDict

import numpy as np
import plyvel
import zmq

from ..runtime import (EXIT_SHUTDOWN, BadFrames, ControlClient, ControlError, EventPublisher, FrameError, Reply, ipc_endpoint,
                       make_socket, notify_ready, pack, serve_one, unpack_map)
from . import _frames as frames
from ._endpoints import inbox_endpoint, neuron_control, topology_path
from ._activations import check_activation
from ._activity import Activity
from ._math import backward, forward, initial_weights, output_gradient, seed_from_siblings
from ._modulator import ModulatorLink
from ._neurotransmitters import DEFAULT_TRANSMITTER, NEUTRAL, modulation, region_chemistry
from ._plasticity import (DEFAULT_PLASTICITY, EligibilityTrace, eligibility, explore, oja_update, tempered,
                          three_factor_update)
from ._state import NeuronStore, TornState, params_checksum
from ._states import DEFAULT_STATE, check_state, flush_interval
from ._topology import INPUT, OUTPUT, Topology, load_live_topology

MAX_PENDING = 4096
"""Joins and kept forward passes per neuron; beyond this the oldest is dropped (and counted)."""
KEPT_TTL_S = 10.0
"""A forward pass kept for learning is dropped if its gradient has not come back by then."""
RECENT_DONE = 8192
"""Completed packet ids remembered so that a late part is recognised and dropped, not re-joined."""
DRAIN_BATCH = 512
SEED_TIMEOUT_S = 0.3
SEED_MIN_UPTIME_S = 1.0
"""A sibling younger than this is a newcomer too and is not seeded from."""
IDLE_POLL_MS = 60_000
"""The longest a neuron with nothing due sleeps (its next report usually comes sooner)."""
REPORT_INTERVAL_S = 1.0
"""How often a neuron publishes its status and metrics as a ``neuron_report`` event (the first at once)."""
NETWORK_REPORTS_PER_S = 100.0
"""The most reports a second all the neurons of a network send together: past 100 neurons each one
reports less often (see :func:`report_interval_s`)."""


class Join:
    """The parts of one packet received so far, in a fixed slot order."""

    __slots__ = ("parts", "count", "started", "learn", "meta")

    def __init__(self, slots: int, started: float, learn: bool = False, meta: bytes = b""):
        self.parts: list = [None] * slots
        self.count = 0
        self.started = started
        self.learn = learn
        self.meta = meta


class Neuron:
    def __init__(self, args: dict, env: dict):
        self.id = args["neuron"]
        self.data_dir = args["data_dir"]
        self.run_dir = env["run_dir"]
        self.twin_of = args.get("twin_of")
        """A twin in the maintenance pool: the control endpoint of the working neuron it copies.
        It lives in its own data plane (``plane_dir``) and DB (``store_dir``), and reports to no modulator."""
        self.plane_dir = args.get("plane_dir", self.run_dir)
        self.frozen = bool(args.get("frozen", False))
        """Pass gradients upstream but keep the weights as they are (a pool twin not in its turn)."""
        self.started_t = time.time()
        topology = load_live_topology(topology_path(self.data_dir))  # parsed in the launcher (before_spawn)
        settings = topology.settings_of(self.id)
        self.layer = settings["layer"]
        self.units = int(settings["units"])
        self.policy = settings["policy"]
        self.settings = {k: settings[k] for k in ("activation", "learning_rate", "flush_interval_s", "join_timeout_ms")}
        self.transmitter = settings.get("transmitter", DEFAULT_TRANSMITTER)
        self.plasticity = settings.get("plasticity", DEFAULT_PLASTICITY)
        self.learning = True
        self.activity = Activity()
        self.context = float(settings.get("context", 0.0))
        """Leaky persistence of the output across samples (a prefrontal region's working memory): what
        is sent is ``(1 - context) * output + context * what was sent before``."""
        self.held: np.ndarray | None = None
        self.counters = {"forwards": 0, "samples": 0, "backwards": 0, "updates": 0, "missed_inputs": 0,
                         "missed_gradients": 0, "late": 0, "expired": 0, "dropped_sends": 0,
                         "flush_errors": 0}
        self.bad = BadFrames(f"neuron {self.id}")
        self.rng = np.random.default_rng()
        self.ctx = zmq.Context()
        self.events = EventPublisher(self.ctx, env.get("events"), env.get("path", self.id))
        self.inputs: list[str] = []
        self.widths: dict[str, int] = {}
        self.input_slot: dict[str, int] = {}
        self.out_socks: dict[str, zmq.Socket] = {}
        self.back_socks: dict[str, zmq.Socket] = {}
        self.output_slot: dict[str, int] = {}
        self._set_inputs(topology.inputs_of(self.id), {n: topology.width_of(n) for n in topology.inputs_of(self.id)})
        for dst in topology.outputs_of(self.id):
            self._connect_output(dst)
        self.is_end = OUTPUT in self.out_socks
        self.store_path = os.path.join(args.get("store_dir", self.data_dir), "neurons", self.id)
        self.store, self.weights, self.bias, self.origin = self._open_state(topology, args)
        self.dirty = False
        self.flush_failing = False
        self.joins: OrderedDict[int, Join] = OrderedDict()
        self.grads: OrderedDict[int, Join] = OrderedDict()
        self.kept: OrderedDict[int, tuple] = OrderedDict()
        self.done: OrderedDict[int, None] = OrderedDict()
        self.inbox = make_socket(self.ctx, zmq.PULL, bind=inbox_endpoint(self.plane_dir, self.id))
        self.control = make_socket(self.ctx, zmq.ROUTER, bind=env["control"])
        self.stop_requested = False
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self._open_chemistry(topology)
        self.next_flush = time.monotonic() + self._flush_interval()
        self.handlers = {
            "ping": lambda r: "pong", "status": lambda r: self.status(), "metrics": lambda r: self.metrics(),
            "get_params": lambda r: self.get_params(), "set_params": self.set_params,
            "add_link": self.add_link, "remove_link": self.remove_link, "snapshot": lambda r: self.snapshot(),
            "tap": self.set_tap, "inject": self.inject, "set_state": self.set_state,
        }
        self.tap: zmq.Socket | None = None
        self.outgoing_gradients: list[tuple[int, np.ndarray]] = []
        self.injected = 0
        self.next_bus_report = 0.0
        self.report_interval_s = report_interval_s(topology.neuron_count)

    def _on_term(self, *_):
        self.stop_requested = True

    # -- state: open, restore, seed ------------------------------------------------------------
    def _open_state(self, topology: Topology, args: dict):
        """Open the neuron's DB and decide where its weights come from (see docs/neuron.md)."""
        existed = os.path.exists(self.store_path)
        store = NeuronStore(self.store_path)
        died = existed and not store.was_clean
        try:
            saved = store.load()
        except TornState as exc:  # never use a torn state: behave as after a death, with nothing saved
            print(f"neuron {self.id}: {exc}; starting as a replacement", file=sys.stderr, flush=True)
            died, saved = True, None
        fan_in = sum(self.widths.values())
        if saved is not None and not (died and self.policy == "replace"):
            return store, *self._restored(saved, "crash" if died else "polite stop")
        if self.twin_of is not None:
            return store, *self._copied(self.twin_of)
        if died:
            store.close(clean=False)
            NeuronStore.discard(self.store_path)
            store = NeuronStore(self.store_path)
        if died or args.get("seed_from_siblings"):
            siblings = self._fetch_sibling_params(topology)
            if not siblings and saved is not None:
                # the whole layer went at once: its own last flush beats random weights
                weights, bias, _ = self._restored(saved, "crash")
                origin = {"seeding": {"method": "own_last_flush", "siblings": [], "policy": self.policy,
                                      "reason": "replacement"}}
                return store, weights, bias, origin
            weights, bias, used = seed_from_siblings([s[1:] for s in siblings], fan_in, self.units, self.rng)
            method = "siblings_mean" if used else "fresh"
            origin = {"seeding": {"method": method, "siblings": [s[0] for s in siblings][:used] if used else [],
                                  "policy": self.policy, "reason": "replacement" if died else "new neuron"}}
            return store, weights, bias, origin
        rng = np.random.default_rng([topology.seed, *self.id.encode()])
        weights, bias = initial_weights(fan_in, self.units, rng)
        return store, weights, bias, {"fresh": True}

    def _restored(self, saved, after: str) -> tuple:
        """Weights, bias and origin note from a saved state (re-laid for the current inputs)."""
        self.settings.update(saved.settings.get("overrides", {}))
        self.counters.update({k: v for k, v in saved.counters.items() if k in self.counters})
        weights = self._rows_for_inputs(saved.weights, saved.settings.get("inputs", self.inputs),
                                        saved.settings.get("widths", self.widths))
        return weights, saved.bias.astype(np.float32), {"restored": {"flushes": saved.flushes, "after": after}}

    def _copied(self, endpoint: str) -> tuple:
        """Weights, bias and origin note of a twin: the working neuron's, as they are now."""
        client = ControlClient(self.ctx, endpoint, SEED_TIMEOUT_S * 10)
        try:
            params = client.call("get_params")
        finally:
            client.close()
        weights = self._rows_for_inputs(_array(params["weights"]), params["inputs"], params["widths"])
        return weights, _array(params["bias"]), {"seeding": {"method": "twin", "of": endpoint}}

    def _fetch_sibling_params(self, topology: Topology) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Ask every same-layer sibling for its weights at once; the dead or slow are skipped."""
        siblings = topology.siblings_of(self.id)
        clients = {s: ControlClient(self.ctx, neuron_control(self.run_dir, topology, s), SEED_TIMEOUT_S)
                   for s in siblings}
        answers = []
        try:
            for sibling, client in clients.items():
                try:
                    params = client.call("get_params")
                except ControlError:
                    continue
                if params.get("uptime_s", SEED_MIN_UPTIME_S) < SEED_MIN_UPTIME_S:
                    continue  # a newcomer itself (its whole layer went at once): nothing to learn from it
                answers.append((sibling, _array(params["weights"]), _array(params["bias"])))
        finally:
            for client in clients.values():
                client.close()
        return answers

    def _rows_for_inputs(self, weights: np.ndarray, old_inputs: list[str], old_widths: dict) -> np.ndarray:
        """Weights re-laid for the current inputs: rows of links kept, fresh rows for new links."""
        if list(old_inputs) == self.inputs and weights.shape[0] == sum(self.widths.values()):
            return weights.astype(np.float32)
        offsets, at = {}, 0
        for src in old_inputs:
            offsets[src] = at
            at += int(old_widths[src])
        blocks = []
        for src in self.inputs:
            width = self.widths[src]
            if src in offsets and int(old_widths[src]) == width and offsets[src] + width <= weights.shape[0]:
                blocks.append(weights[offsets[src]:offsets[src] + width])
            else:
                blocks.append(initial_weights(width, self.units, self.rng)[0])
        return np.concatenate(blocks).astype(np.float32)

    # -- neuromodulation and state (docs/brain.md) ---------------------------------------------
    def _open_chemistry(self, topology: Topology) -> None:
        """Resting levels (neutral), and a link to the region's modulator if the region has one."""
        region = topology.region_of_layer(topology.layer_of(self.id))
        chemistry = region_chemistry(topology.neurotransmitters or {}, region)
        self.region, self.levels, self.rest = region, chemistry.resting_levels(), chemistry.resting_levels()
        self.modulation = NEUTRAL
        self.rpe = {"last": 0.0, "rewards": 0}
        self.levels_seq = 0
        self.state, self.state_source, self.region_state = DEFAULT_STATE, "default", None
        self.trace: EligibilityTrace | None = None
        self.modulator = None
        if region in topology.modulated_regions() and self.twin_of is None:
            self.modulator = ModulatorLink(self.ctx, self.run_dir, region, self.id, self.transmitter,
                                           chemistry.publish_interval_s)

    def _on_levels(self) -> None:
        """Levels from the modulator: new gain and learning rate, dopamine's RPE, the region's state."""
        for published in self.modulator.receive(self.bad):
            try:
                levels, rest = published["levels"], published["rest"]
                self.levels, self.rest = {k: float(v) for k, v in levels.items()}, {k: float(v) for k, v in rest.items()}
                rewards, rpe, state = int(published.get("rewards", 0)), float(published.get("rpe", 0.0)), published["state"]
                check_state(state)
                self.levels_seq = int(published["seq"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self._bad_frame(FrameError("bad_levels", str(exc)))
                continue
            self.modulation = modulation(self.levels, self.rest)
            if rewards:
                self.rpe = {"last": rpe, "rewards": self.rpe["rewards"] + rewards}
                self._reinforce(rpe)
            if state != self.region_state:
                self.region_state = state
                self._set_state(state, "region")

    def _reinforce(self, rpe: float) -> None:
        """Dopamine's third factor: credit the eligibility tags with the RPE, consuming them."""
        if self.trace is None or not self.learning or self.frozen:
            return
        tags = self.trace.take(time.monotonic())
        three_factor_update(self.weights, self.bias, tags, rpe, self._learning_rate())
        self.counters["updates"] += 1
        self.dirty = True

    def _learning_rate(self) -> float:
        return self.settings["learning_rate"] * self.modulation.learning_rate_factor

    def _flush_interval(self) -> float:
        return flush_interval(self.state, self.settings["flush_interval_s"])

    def _set_state(self, state: str, source: str) -> None:
        changed = state != self.state
        self.state, self.state_source = state, source
        if changed:
            self.next_flush = min(self.next_flush, time.monotonic() + self._flush_interval())
            self.events.emit("neuron_state", id=self.id, state=state, source=source,
                             flush_interval_s=self._flush_interval())

    def set_state(self, request: dict) -> dict:
        """By hand: this neuron's state until the next change (by hand, or of its region's state)."""
        try:
            self._set_state(check_state(request.get("state")), "manual")
        except ValueError as exc:
            raise Reply("bad_request", str(exc)) from None
        return {"state": self.state, "state_source": self.state_source,
                "effective_flush_interval_s": self._flush_interval()}

    def _respond(self, x: np.ndarray, learning: list[slice] | None) -> np.ndarray:
        """The outputs for rows ``x`` at the current gain; a local rule learns here from the packets
        whose rows are ``learning`` (None: none), one update per packet as backprop makes."""
        gain = self.modulation.gain
        weights, bias = (self.weights, self.bias) if gain == 1.0 else (self.weights * gain, self.bias * gain)
        y = forward(x, weights, bias, self.settings["activation"])
        if self.modulator is not None:
            self.modulator.note_activity(float(np.abs(y).mean(axis=1).sum()), y.shape[0])
        if learning is None:
            return y
        if self.plasticity == "oja":
            for rows in learning:
                oja_update(x[rows], self.weights, self._learning_rate())
        else:
            learn_rows = np.zeros(x.shape[0], dtype=bool)
            for rows in learning:
                learn_rows[rows] = True
            activation, temperature = self.settings["activation"], self.modulation.exploration
            y_mean = tempered(y[learn_rows], activation, temperature)
            y[learn_rows] = explore(y_mean, activation, self.rng, temperature)
            if self.trace is None or self.trace.weights.shape != self.weights.shape:
                self.trace = EligibilityTrace(*self.weights.shape)
            self.trace.add(eligibility(x[learn_rows], y[learn_rows], y_mean), time.monotonic())
        self.counters["updates"] += len(learning)
        self.dirty = True
        return y

    # -- links -----------------------------------------------------------------------------------
    def _set_inputs(self, inputs: list[str], widths: dict[str, int]) -> None:
        self.inputs = list(inputs)
        self.widths = {src: int(widths[src]) for src in self.inputs}
        self.input_slot = {src: i for i, src in enumerate(self.inputs)}
        for src in self.inputs:
            if src != INPUT and src not in self.back_socks:
                self.back_socks[src] = make_socket(self.ctx, zmq.PUSH, connect=inbox_endpoint(self.plane_dir, src))
        for src in [s for s in self.back_socks if s not in self.input_slot]:
            self.back_socks.pop(src).close()

    def _connect_output(self, dst: str) -> None:
        self.out_socks[dst] = make_socket(self.ctx, zmq.PUSH, connect=inbox_endpoint(self.plane_dir, dst))
        self.output_slot = {d: i for i, d in enumerate(self.out_socks)}

    # -- the loop --------------------------------------------------------------------------------
    def serve(self) -> None:
        notify_ready({"neuron": self.id, "layer": self.layer, **self.origin})
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.wake_r, zmq.POLLIN)
        if self.modulator is not None:
            poller.register(self.modulator.levels, zmq.POLLIN)
        while not self.stop_requested:
            ready = dict(poller.poll(min(self._poll_timeout_ms(), self._bus_report_due_ms())))
            if self.modulator is not None and self.modulator.levels in ready:
                self._on_levels()  # first: dopamine for earlier passes before tags of new ones
            if self.inbox in ready:
                self._drain_inbox()
            if self.control in ready:
                serve_one(self.control, self.handlers, self.bad)
            if self.wake_r in ready:
                os.read(self.wake_r, 512)
            now = time.monotonic()
            self._expire(now)
            if now >= self.next_bus_report:
                self._bus_report(now)
            if now >= self.next_flush:
                self._flush(sync=False)
            if self.modulator is not None and now >= self.modulator.next_report:
                self.modulator.report(now)
        self._stop()

    def _poll_timeout_ms(self) -> int:
        """Until the next thing due: a flush (only with something to write: an idle neuron of a large
        network does not wake to find nothing), the modulator's report, a join's deadline, a kept
        pass's expiry."""
        deadlines = [self.next_flush] if self.dirty else []
        if self.modulator is not None:
            deadlines.append(self.modulator.next_report)
        timeout_s = self.settings["join_timeout_ms"] / 1000.0
        for pending in (self.joins, self.grads):
            if pending:
                deadlines.append(next(iter(pending.values())).started + timeout_s)
        if self.kept:
            deadlines.append(next(iter(self.kept.values()))[2] + KEPT_TTL_S)
        if not deadlines:
            return IDLE_POLL_MS
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _drain_inbox(self) -> None:
        """Take everything waiting (up to a bound), then compute and send it in one go per link.

        A quiet neuron thus answers each packet at once, and a busy one sends one bundle per link
        for all it has, which is what keeps a learning network fast (see docs/neuron.md).
        """
        joined: list[tuple] = []
        returned: list[tuple] = []
        recv = self.inbox.recv
        for _ in range(DRAIN_BATCH):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                message = frames.decode(frame)
                if message[0] == frames.FORWARD:
                    self._on_forward(message, joined)
                else:
                    self._on_gradient(message, returned)
            except FrameError as exc:
                self._bad_frame(exc)
        if joined:
            self._compute(joined)
        if returned:
            self._learn_from(returned)

    def _bad_frame(self, exc: FrameError) -> None:
        self.bad.note(exc.kind, exc.detail)

    def _on_forward(self, message: list, joined: list) -> None:
        _, src, packets, rows, data, learn, metas = message
        slot = self.input_slot.get(src)
        if slot is None:
            raise FrameError("unknown_source", f"{src!r} is not an input of {self.id}")
        blocks = frames.split_rows(data, rows, self.widths[src])
        if len(self.inputs) == 1:
            joined.extend(([block], packet, bool(lrn), meta)
                          for block, packet, lrn, meta in zip(blocks, packets, learn, metas))
            return
        for block, packet, lrn, meta in zip(blocks, packets, learn, metas):
            join = self.joins.get(packet)
            if join is None:
                if packet in self.done:
                    self.counters["late"] += 1
                    continue
                join = self.joins[packet] = Join(len(self.inputs), time.monotonic(), bool(lrn), meta)
                if len(self.joins) > MAX_PENDING:
                    joined.append(self._complete_join(*self.joins.popitem(last=False)))
            if join.parts[slot] is None:
                join.count += 1
            join.parts[slot] = block
            if join.count == len(self.inputs):
                del self.joins[packet]
                joined.append(self._complete_join(packet, join))

    def _complete_join(self, packet: int, join: Join) -> tuple:
        """(parts, packet, learn, meta) with zeros for the inputs that did not come (counted)."""
        rows = next(p.shape[0] for p in join.parts if p is not None)
        parts = []
        for src, part in zip(self.inputs, join.parts):
            if part is None or part.shape[0] != rows:
                self.counters["missed_inputs"] += 1
                part = np.zeros((rows, self.widths[src]), dtype=np.float32)
            parts.append(part)
        self._remember_done(packet)
        return parts, packet, join.learn, join.meta

    def _compute(self, joined: list[tuple]) -> None:
        """One forward pass over every joined packet, then one bundle per outgoing link."""
        xs = [parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1) for parts, *_ in joined]
        x_all = xs[0] if len(xs) == 1 else np.concatenate(xs)
        learn = [j[2] and self.learning for j in joined]
        learning = None
        if self.plasticity != "backprop" and any(learn) and not self.frozen:
            bounds = np.cumsum([0, *(x.shape[0] for x in xs)])
            learning = [slice(bounds[i], bounds[i + 1]) for i, lrn in enumerate(learn) if lrn]
        y_all = self._respond(np.ascontiguousarray(x_all, dtype=np.float32), learning)
        ys = [y_all] if len(xs) == 1 else np.split(y_all, np.cumsum([x.shape[0] for x in xs])[:-1])
        self.counters["forwards"] += len(xs)
        self.counters["samples"] += y_all.shape[0]
        self.activity.note_outputs(y_all, self.settings["activation"])
        sent = ys if not self.context or self.is_end else self._hold(ys)
        self._emit(xs, ys, sent, [j[1] for j in joined], learn, [j[3] for j in joined])

    def _hold(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        """The outputs to send with the context held: each row mixed with the row sent before it."""
        held = []
        for y in ys:
            out = np.empty_like(y)
            for i, row in enumerate(y):
                self.held = row if self.held is None else (1.0 - self.context) * row + self.context * self.held
                out[i] = self.held
            held.append(out)
        return held

    def _emit(self, xs: list, ys: list, sent: list, packets: list, learn: list, metas: list) -> None:
        """Send outputs (``sent``: ``ys`` with any context held) on: downstream, keeping the passes learnt
        from, or at the end to MessengerOut."""
        if self.is_end:
            losses = [self._learn_at_end(p, x, y, lrn, meta) for p, x, y, lrn, meta in zip(packets, xs, ys, learn, metas)]
            for loss in losses:
                if loss is not None:
                    self.activity.note_loss(loss)
            self._flush_gradients()
            self._send(self.out_socks[OUTPUT], frames.encode_output(self.id, packets, ys, metas, losses))
            return
        now = time.monotonic()
        for packet, x, y, lrn in zip(packets, xs, ys, learn):
            if lrn and self.plasticity == "backprop":
                self.kept[packet] = (x, y, now)
        while len(self.kept) > MAX_PENDING:
            self.kept.popitem(last=False)
            self.counters["expired"] += 1
        frame = frames.encode_forward(self.id, packets, sent, learn, metas)
        for sock in self.out_socks.values():
            self._send(sock, frame)

    def _learn_at_end(self, packet: int, x: np.ndarray, y: np.ndarray, learn: bool, meta: bytes) -> float | None:
        """At the end node the loss gives the first gradient; returns the loss (None if not learning)."""
        if not learn or self.plasticity != "backprop":
            return None
        try:
            targets = unpack_map(meta).get("targets")
            if targets is None:
                return None
            dz, loss = output_gradient(y, targets, self.settings["activation"])
        except (FrameError, ValueError, TypeError) as exc:
            self._bad_frame(FrameError("bad_target", str(exc)))
            return None
        self._learn(packet, x, y, dz, grad_is_dz=True)
        return loss

    def _on_gradient(self, message: list, returned: list) -> None:
        _, src, packets, rows, data = message
        slot = self.output_slot.get(src)
        if slot is None:
            raise FrameError("unknown_source", f"{src!r} is not an output of {self.id}")
        if self.plasticity != "backprop":
            return  # a local rule learns from its own activity; a backprop readout's gradients stop here
        blocks = frames.split_rows(data, rows, self.units)
        if len(self.out_socks) == 1:
            returned.extend(zip(packets, blocks))
            return
        for packet, grad in zip(packets, blocks):
            join = self.grads.get(packet)
            if join is None:
                join = self.grads[packet] = Join(len(self.out_socks), time.monotonic())
            if join.parts[slot] is None:
                join.count += 1
            join.parts[slot] = grad
            if join.count == len(self.out_socks):
                del self.grads[packet]
                returned.append((packet, _sum_parts(join.parts)))

    def _learn_from(self, returned: list[tuple]) -> None:
        """Update from each packet's gradient in arrival order, then one bundle per upstream link."""
        for packet, grad in returned:
            kept = self.kept.pop(packet, None)
            if kept is None:
                self.counters["late"] += 1
                continue
            x, y, _ = kept
            if grad.shape != y.shape:
                self._bad_frame(FrameError("wrong_shape", f"gradient {grad.shape} for outputs {y.shape}"))
                continue
            self.counters["backwards"] += 1
            self._learn(packet, x, y, grad, grad_is_dz=False)
        self._flush_gradients()

    def _learn(self, packet: int, x: np.ndarray, y: np.ndarray, grad: np.ndarray, grad_is_dz: bool) -> None:
        # y = act(gain * z) carries the gain into the gradient; the sent output holds 1 - context of y
        scale = self.modulation.gain * (1.0 - self.context)
        learning_rate = 0.0 if self.frozen else self._learning_rate()
        dx = backward(x, y, grad if scale == 1.0 else grad * np.float32(scale), self.weights, self.bias,
                      self.settings["activation"], learning_rate, grad_is_dz)
        if not self.frozen:
            self.counters["updates"] += 1
            self.dirty = True
        self.outgoing_gradients.append((packet, dx))

    def _flush_gradients(self) -> None:
        """Send the input gradients computed so far, one bundle per upstream neuron."""
        if not self.outgoing_gradients:
            return
        packets = [p for p, _ in self.outgoing_gradients]
        at = 0
        for src in self.inputs:
            width = self.widths[src]
            if src != INPUT:
                grads = [dx[:, at:at + width] for _, dx in self.outgoing_gradients]
                self._send(self.back_socks[src], frames.encode_gradient(self.id, packets, grads))
            at += width
        self.outgoing_gradients.clear()

    def _send(self, sock: zmq.Socket, frame: bytes) -> None:
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.counters["dropped_sends"] += 1
        if self.tap is not None:
            try:  # a mirror never slows the neuron down: a slow tap loses frames, not the neuron
                self.tap.send_multipart([self.tap_topics.get(sock, b"new-link"), frame], zmq.NOBLOCK)
            except zmq.Again:
                pass

    def _remember_done(self, packet: int) -> None:
        self.done[packet] = None
        if len(self.done) > RECENT_DONE:
            self.done.popitem(last=False)

    def _expire(self, now: float) -> None:
        """Joins past their deadline go on without what is missing; stale kept passes are dropped."""
        timeout_s = self.settings["join_timeout_ms"] / 1000.0
        joined = [self._complete_join(packet, join) for packet, join in _overdue(self.joins, now, timeout_s)]
        if joined:
            self._compute(joined)
        returned = []
        for packet, join in _overdue(self.grads, now, timeout_s):
            self.counters["missed_gradients"] += len(join.parts) - join.count
            returned.append((packet, _sum_parts(join.parts)))
        if returned:
            self._learn_from(returned)
        while self.kept:
            packet, (_, _, kept_at) = next(iter(self.kept.items()))
            if now - kept_at < KEPT_TTL_S:
                break
            del self.kept[packet]
            self.counters["expired"] += 1

    # -- persistence -----------------------------------------------------------------------------
    def _persisted_settings(self) -> dict:
        return {"inputs": self.inputs, "widths": self.widths, "units": self.units, "overrides": self.settings}

    def _flush(self, sync: bool) -> None:
        self.next_flush = time.monotonic() + self._flush_interval()
        if not (self.dirty or sync):
            return
        try:
            self.store.flush(self.weights, self.bias, self._persisted_settings(), self.counters, sync=sync)
        except plyvel.Error as exc:  # e.g. a full disk: keep serving, keep the state dirty, retry next time
            self.counters["flush_errors"] += 1
            if not self.flush_failing:
                print(f"neuron {self.id}: flush failed ({exc}); will retry", file=sys.stderr, flush=True)
                self.events.emit("flush_failed", id=self.id, detail=str(exc))
            self.flush_failing = True
            return
        self.dirty = False
        if self.flush_failing:
            self.flush_failing = False
            self.events.emit("flush_recovered", id=self.id, flushes=self.store.flushes)

    def _stop(self) -> None:
        """Polite stop: flush everything synchronously, mark the DB clean, exit with ``shutdown``.

        The ``neuron_stopped`` event carries the checksum of the weights held in memory at the end,
        so anyone can check that what the DB gives back on the next start is exactly that.
        """
        self._flush(sync=True)
        self.events.emit("neuron_stopped", id=self.id, checksum=params_checksum(self.weights, self.bias),
                         flushed=not self.dirty, flushes=self.store.flushes)
        self.close(clean=not self.dirty)
        raise SystemExit(EXIT_SHUTDOWN)

    def close(self, clean: bool) -> None:
        """Close the DB (clean: mark that this run stopped politely) and every socket."""
        if not self.store.closed:
            self.store.close(clean=clean)
        for sock in (self.inbox, self.control, *self.out_socks.values(), *self.back_socks.values()):
            sock.close(linger=0 if not clean else None)
        if self.modulator is not None:
            self.modulator.close()
        if self.tap is not None:
            self.tap.close()
        self.events.close()
        self.ctx.term()

    # -- control API -----------------------------------------------------------------------------
    def status(self) -> dict:
        return {"id": self.id, "layer": self.layer, "pid": os.getpid(), "units": self.units,
                "inputs": self.inputs, "outputs": list(self.out_socks), "policy": self.policy,
                "learning": self.learning, "frozen": self.frozen, "twin_of": self.twin_of, "uptime_s": time.time() - self.started_t,
                "started": self.origin, **self.settings,
                "last_flush_t": self.store.last_flush_t, "last_flush_ms": self.store.last_flush_ms,
                "flushes": self.store.flushes, "region": self.region, "transmitter": self.transmitter,
                "plasticity": self.plasticity, "state": self.state, "state_source": self.state_source,
                "effective_flush_interval_s": self._flush_interval(), "neuromodulators": self._chemistry(),
                "report_interval_s": self.report_interval_s}

    def metrics(self) -> dict:
        w = self.weights
        hist, edges = np.histogram(w, bins=10)
        return {**self.counters, "bad_frames": self.bad.total, "bad_frames_by_kind": dict(self.bad.by_kind),
                "pending_joins": len(self.joins),
                "pending_gradients": len(self.grads), "kept": len(self.kept), "rss_bytes": _rss_bytes(),
                "state": self.state, "neuromodulators": self._chemistry(), "activity": self.activity.snapshot(),
                "weights": {"mean": float(w.mean()), "std": float(w.std()), "min": float(w.min()),
                            "max": float(w.max()), "histogram": hist.tolist(),
                            "edges": [float(e) for e in edges]}}

    def _chemistry(self) -> dict:
        return {"levels": self.levels, "rest": self.rest, "gain": self.modulation.gain,
                "learning_rate_factor": self.modulation.learning_rate_factor,
                "exploration": self.modulation.exploration, "rpe": self.rpe["last"],
                "rewards": self.rpe["rewards"], "seq": self.levels_seq, "modulated": self.modulator is not None}

    def get_params(self) -> dict:
        return {"weights": frames.array_to_wire(self.weights), "bias": frames.array_to_wire(self.bias), "inputs": self.inputs,
                "widths": self.widths, "learning_rate": self.settings["learning_rate"],
                "uptime_s": time.time() - self.started_t}

    def set_params(self, request: dict) -> dict:
        changes = {k: request[k] for k in ("weights", "bias", "activation", "learning_rate", "flush_interval_s",
                                           "join_timeout_ms", "learning", "frozen") if k in request}
        if not changes:
            raise Reply("bad_request", "nothing to set; give weights, bias, activation, learning_rate, "
                                       "flush_interval_s, join_timeout_ms, learning or frozen")
        new = {}
        for key in ("weights", "bias"):
            if key in changes:
                array = _array(changes[key])
                current = getattr(self, key)
                if array.shape != current.shape:
                    raise Reply("wrong_shape", f"{key} must have shape {list(current.shape)}, got {list(array.shape)}")
                new[key] = current + array if request.get("add") else array  # add: a change learnt elsewhere
        if "activation" in changes:
            try:
                check_activation(changes["activation"])
            except ValueError as exc:
                raise Reply("bad_request", str(exc)) from None
        for key in ("learning_rate", "flush_interval_s", "join_timeout_ms"):
            if key in changes and (not isinstance(changes[key], (int, float)) or changes[key] <= 0):
                raise Reply("bad_request", f"{key} must be a positive number")
        for key, value in new.items():
            setattr(self, key, value)
        for key in ("activation", "learning_rate", "flush_interval_s", "join_timeout_ms"):
            if key in changes:
                self.settings[key] = changes[key]
        if "learning" in changes:
            self.learning = bool(changes["learning"])
        if "frozen" in changes:
            self.frozen = bool(changes["frozen"])
        if "flush_interval_s" in changes:
            self.next_flush = min(self.next_flush, time.monotonic() + self._flush_interval())
        self.dirty = True
        return self.status()

    def add_link(self, request: dict) -> dict:
        direction, peer = request.get("direction"), request.get("peer")
        if direction not in ("in", "out") or not isinstance(peer, str):
            raise Reply("bad_request", "add_link needs direction 'in' or 'out' and a peer id")
        if direction == "out":
            if peer in self.out_socks:
                raise Reply("already_linked", f"{self.id} -> {peer} exists")
            self._connect_output(peer)
        else:
            width = request.get("width")
            if peer in self.input_slot:
                raise Reply("already_linked", f"{peer} -> {self.id} exists")
            if not isinstance(width, int) or width <= 0:
                raise Reply("bad_request", "an input link needs the peer's width")
            self._settle_pending(inputs_change=True)
            old_inputs, old_widths = self.inputs, self.widths
            self._set_inputs([*self.inputs, peer], {**self.widths, peer: width})
            self.weights = self._rows_for_inputs(self.weights, old_inputs, old_widths)
        self.dirty = True
        return {"inputs": self.inputs, "outputs": list(self.out_socks)}

    def remove_link(self, request: dict) -> dict:
        direction, peer = request.get("direction"), request.get("peer")
        if direction == "out":
            if peer not in self.out_socks:
                raise Reply("not_found", f"no link {self.id} -> {peer}")
            if len(self.out_socks) == 1:
                raise Reply("last_link", f"{self.id} would have no output left")
            self._settle_pending(inputs_change=False)
            self.out_socks.pop(peer).close()
            self.output_slot = {d: i for i, d in enumerate(self.out_socks)}
        elif direction == "in":
            if peer not in self.input_slot:
                raise Reply("not_found", f"no link {peer} -> {self.id}")
            if len(self.inputs) == 1:
                raise Reply("last_link", f"{self.id} would have no input left")
            self._settle_pending(inputs_change=True)
            old_inputs, old_widths = self.inputs, self.widths
            self._set_inputs([s for s in self.inputs if s != peer], self.widths)
            self.weights = self._rows_for_inputs(self.weights, old_inputs, old_widths)
        else:
            raise Reply("bad_request", "remove_link needs direction 'in' or 'out' and a peer id")
        self.dirty = True
        return {"inputs": self.inputs, "outputs": list(self.out_socks)}

    def _settle_pending(self, inputs_change: bool) -> None:
        """Before a link changes, joins in progress go on at once with what they have.

        Forward passes kept for learning no longer fit the weights once the inputs change, so
        they are dropped (counted as expired): those packets are answered, only not learned from.
        """
        if self.joins:
            self._compute([self._complete_join(*self.joins.popitem(last=False)) for _ in range(len(self.joins))])
        if self.grads:
            self._learn_from([(p, _sum_parts(j.parts)) for p, j in self.grads.items()])
            self.grads.clear()
        if inputs_change:
            self.counters["expired"] += len(self.kept)
            self.kept.clear()

    def set_tap(self, request: dict) -> dict:
        """Mirror every frame this neuron sends on a PUB socket, topic ``<dst>`` (``neurox probe tap``)."""
        endpoint = ipc_endpoint(self.plane_dir, f"{self.id}.tap")
        if request.get("on", True):
            if self.tap is None:
                self.tap = make_socket(self.ctx, zmq.PUB, bind=endpoint, hwm=1000, linger_ms=0)
            self.tap_topics = {**{s: d.encode() for d, s in self.out_socks.items()},
                               **{s: f"grad>{d}".encode() for d, s in self.back_socks.items()}}
            return {"endpoint": endpoint}
        if self.tap is not None:
            self.tap.close()
            self.tap = None
        return {"endpoint": None}

    def inject(self, request: dict) -> dict:
        """Compute on a given input vector and send the result on, as if it came from upstream.

        The packet is inference only; its answer reaches ``origin`` (if given) through MessengerOut.
        """
        vector = request.get("vector")
        fan_in = sum(self.widths.values())
        if not isinstance(vector, list) or len(vector) != fan_in:
            raise Reply("wrong_shape", f"{self.id} takes {fan_in} input values")
        try:
            x = np.asarray(vector, dtype=np.float32).reshape(1, fan_in)
        except (TypeError, ValueError):
            raise Reply("bad_request", "'vector' must hold numbers") from None
        self.injected += 1
        packet = (0xFFFF << 40) | (os.getpid() << 16 & 0xFFFFFF0000) | (self.injected & 0xFFFF)
        origin = request.get("origin")
        meta = pack({"origin": origin}) if isinstance(origin, str) else pack({})
        y = self._respond(x, None)
        self._emit([x], [y], [y], [packet], [False], [meta])  # a probe: the held context stays as it was
        return {"packet": packet, "output": y[0].tolist()}

    def snapshot(self) -> dict:
        self._flush(sync=True)
        return {"flushes": self.store.flushes, "last_flush_t": self.store.last_flush_t}

    # -- periodic report (read by the Supervisor service, neurox/ops) -----------------------------
    def _bus_report_due_ms(self) -> int:
        return max(0, int((self.next_bus_report - time.monotonic()) * 1000) + 1)

    def _bus_report(self, now: float) -> None:
        """Publish what ``status`` and ``metrics`` answer, as one ``neuron_report`` event."""
        self.next_bus_report = now + self.report_interval_s
        if self.twin_of is not None:
            return  # a twin's figures are not the network's: its working neuron reports for it
        self.events.emit("neuron_report", id=self.id, status=self.status(), metrics=self.metrics())


def report_interval_s(neurons: int) -> float:
    """Seconds between a neuron's reports in a network of ``neurons``: every second up to 100 neurons,
    then as often as keeps the network at NETWORK_REPORTS_PER_S. A report costs its neuron a wake-up
    and a quarter of a millisecond of numpy, plus the bus's and the service's share; a thousand neurons
    reporting every second kept both cores of a small host busy, and took most of their start time."""
    return max(REPORT_INTERVAL_S, neurons / NETWORK_REPORTS_PER_S)


def _overdue(pending: OrderedDict, now: float, timeout_s: float) -> list[tuple[int, Join]]:
    """Take out the joins (oldest first) whose deadline has passed."""
    out = []
    while pending:
        packet, join = next(iter(pending.items()))
        if now - join.started < timeout_s:
            break
        del pending[packet]
        out.append((packet, join))
    return out


def _sum_parts(parts: list) -> np.ndarray:
    present = [p for p in parts if p is not None]
    total = present[0].copy()
    for p in present[1:]:
        if p.shape == total.shape:
            total += p
    return total


def _array(value) -> np.ndarray:
    try:
        return frames.array_from_wire(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise Reply("bad_request", f"an array is {{'shape': [..], 'data': <float32 bytes>}} ({exc})") from None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def before_fork() -> None:
    """Called once in the launcher: what numpy loads and sets up lazily the first time -- the random
    generators (about 25 ms), a generator seeded from a sequence as a neuron's first weights are, the
    histogram of its first report (together some 240 page faults) -- is then shared by every forked
    neuron instead of paid by each."""
    np.random.default_rng([1, 2]).normal(size=4)
    np.histogram(np.zeros(4, dtype=np.float32), bins=10)


def run_neuron(args: dict, env: dict) -> None:
    """Process entry point of a neuron (``neurox.neuron._network.NEURON_TARGET``)."""
    Neuron(args, env).serve()


_inherited: dict[str, Topology] = {}


def _parse_topology_in_launcher(args: dict) -> bool:
    """Run by the launcher before it forks a neuron: the live topology, parsed there once per version,
    is inherited by every neuron forked after it (see ``load_live_topology``). True: a new version."""
    path = topology_path(args["data_dir"])
    topology = load_live_topology(path)
    new = _inherited.get(path) is not topology
    _inherited[path] = topology
    return new


run_neuron.before_spawn = _parse_topology_in_launcher
