"""A neuron's data plane: what it does with the frames in its inbox (docs/neuron.md).

Forward parts are joined by packet id (``Joins``) over the input links; every packet completed --
in one drain of the inbox, or at its join deadline -- is computed in one matrix product at the gain
the receptors sense, and sent on in one frame per output link (a *bundle*). A learning packet's
pass is kept by the ``LearningRule``; its gradients, joined over the output links, come back later:
the rule learns and returns dLoss/dx, sent upstream in one frame per input link. The end neuron
makes the first gradient from the packet's targets, answers each packet's origin (``_returns``) and
sends its outputs to MessengerOut.

Non-finite values never enter: a forward part holding ``nan`` or ``inf`` is refused and counted
(``non_finite_inputs``; its packet misses that part, as if it had not come), and the rule refuses
an update whose gradient is not finite.
"""
from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from time import monotonic, perf_counter

import numpy as np

from ..runtime import BadFrames, FrameError, Histogram, unpack_map
from . import _frames as frames
from ._frames import FORWARD as FORWARD_FRAME, decode, finite_rows_block
from ._activity import Activity
from ._joins import RECENT_DONE, Joins, Run, stacked_runs
from ._learning_rule import Learnt, LearningRule, stacked_learnt
from ._links import FORMER_LINK, Links
from ._math import forward, held_outputs
from ._receptors import Receptors
from ._returns import Returns

FORWARD, BACKWARD = "F", "B"
MAX_JOURNAL = 200_000
"""Bundles a journal holds at most (a few MiB); then it stops, marked truncated."""


class Pipeline:
    """The data plane of neuron ``owner`` (``units`` outputs) over its parts. ``settings`` is the neuron's
    (read live: activation, learning_rate, join_timeout_ms); ``context`` its leaky output memory. At the
    end of the network, ``returns`` takes each packet's answer to its origin; without it, answers go no
    further than MessengerOut."""

    def __init__(self, owner: str, units: int, links: Links, rule: LearningRule, receptors: Receptors,
                 settings: dict, counters: dict, bad: BadFrames, context: float = 0.0, returns: Returns | None = None):
        self.owner, self.units, self.links, self.rule, self.receptors = owner, units, links, rule, receptors
        self.settings, self.counters, self.bad = settings, counters, bad
        self.returns = returns
        self.context, self.held = context, None
        self.learning, self.frozen = True, False
        """``learning``: learn from packets marked so; ``frozen``: gradients still pass upstream, the weights stay."""
        self.activity = Activity()
        self.processing = Histogram()
        """Seconds from a packet's arrival (the inbox drain that completed it) to its send, per packet."""
        self.joins = Joins([link.width for link in links.inputs], counters, "missed_inputs", "concat", RECENT_DONE)
        self.grads = Joins([units] * len(links.outputs), counters, "missed_gradients", "sum")
        self.outgoing: list[Learnt] = []
        self.journal: list | None = None
        """When on (the ``journal`` request): ``[kind, packets]`` of every bundle, in the order computed --
        ``F`` forward (at the end node with its learning), ``B`` backward -- enough to replay the neuron's
        arithmetic in one process (``neurox.bench._learn_reference``)."""
        self.journal_truncated = False

    def handle(self, batch: list[bytes]) -> None:
        """Frames taken from the inbox at once: what they complete is computed and sent in one go."""
        arrived, joined, returned = perf_counter(), [], []
        for frame in batch:
            try:
                message = decode(frame)
                if message[0] == FORWARD_FRAME:
                    self._on_forward(message, joined)
                else:
                    self._on_gradient(message, returned)
            except FrameError as exc:
                if exc.kind == FORMER_LINK:  # sent before the link went: late, as a packet after its join
                    self.counters["late"] += len(message[2])
                else:
                    self.bad.note(exc.kind, exc.detail)
        if joined:
            run = self.compute(joined)
            self.processing.observe(perf_counter() - arrived, len(run.packets))
        if returned:
            self.learn_from(returned)

    def _on_forward(self, message: list, joined: list) -> None:
        _, src, packets, rows, data, learn, metas = message
        link = self.links.input(src)
        block, bad = finite_rows_block(data, rows, link.width)
        if bad:  # refused and counted: the packet's join misses this part (with one input, it is dropped)
            self.counters["non_finite_inputs"] += len(bad)
            self.bad.note("non_finite", f"packet {packets[bad[0]]} from {src} holds nan or inf")
        self.joins.add_frame(link.slot, block, rows, packets, monotonic(), joined, learn, metas, bad)

    def _on_gradient(self, message: list, returned: list) -> None:
        _, src, packets, rows, data = message
        link = self.links.output(src)
        if self.rule.sends_gradients:  # a local rule learns from its own activity: gradients stop here
            self.grads.add_frame(link.slot, frames.rows_block(data, rows, self.units), rows, packets, monotonic(),
                                 returned)

    def compute(self, joined: list[Run], hold: bool = True) -> Run:
        """One forward pass over every joined run, one frame per link; the run computed, its value the
        outputs. ``hold`` False: a probe, which leaves the held context as it was."""
        packets, x_all, rows, flags, metas = stacked_runs(joined)
        learning, rule, receptors, counters = self.learning, self.rule, self.receptors, self.counters
        learn = [bool(flag) and learning for flag in flags]
        anyone = learning and any(learn)
        x_all = np.ascontiguousarray(x_all, dtype=np.float32)
        gain, activation = receptors.modulation.gain, self.settings["activation"]
        w, b = rule.weights, rule.bias
        y_all = forward(x_all, w if gain == 1.0 else w * gain, b if gain == 1.0 else b * gain, activation)
        receptors.note_outputs(y_all)
        if not rule.sends_gradients and anyone and not self.frozen:
            bounds = [0, *accumulate(rows)]
            learning_rows = [slice(bounds[i], bounds[i + 1]) for i, lrn in enumerate(learn) if lrn]
            y_all = rule.on_forward(x_all, y_all, learning_rows, self.learning_rate(), activation,
                                    receptors.modulation.exploration, monotonic())
        counters["forwards"] += len(packets)
        counters["samples"] += y_all.shape[0]
        counters["forward_bundles"] += 1
        self.activity.note_outputs(y_all, activation)
        if self.journal is not None:
            self._note(FORWARD, packets)
        computed = Run(packets, y_all, rows, learn, metas)
        links = self.links
        if links.is_end:
            losses = self._learn_at_end(packets, rows, x_all, y_all, learn, metas)
            if self.returns is not None:  # the answers first: their origins wait for them, MessengerOut does not
                self.returns.send(packets, rows, y_all, metas, losses, activation)
            self._send_gradients()
            links.send(links.outputs[0], frames.encode_output(self.owner, packets, rows, y_all, metas, losses))
            return computed
        if rule.sends_gradients and anyone:
            rule.keep(packets, rows, x_all, y_all, learn, monotonic())
        sent = y_all
        if self.context and hold:
            sent, self.held = held_outputs(y_all, self.held, self.context)
        frame = frames.encode_forward_block(self.owner, packets, rows, sent, learn, metas)
        for link in links.outputs:
            links.send(link, frame)
        return computed

    def _learn_at_end(self, packets: list, rows: list, x: np.ndarray, y: np.ndarray, learn: list, metas: list
                      ) -> list[float | None]:
        """At the end node the losses give the first gradients, learnt from as one bundle; the loss of each
        packet (None if not learning)."""
        if not self.rule.sends_gradients or not any(learn):
            return [None] * len(packets)
        every, taken, targets = packets, [], []
        for i, (lrn, meta) in enumerate(zip(learn, metas)):
            if lrn:
                try:
                    target = unpack_map(meta).get("targets")
                except FrameError as exc:
                    self.bad.note("bad_target", exc.detail)
                    continue
                if target is not None:
                    taken.append(i)
                    targets.append(target)
        if not taken:
            return [None] * len(packets)
        if len(taken) < len(packets):  # asks among them, or packets without targets: those that learn
            bounds = [0, *accumulate(rows)]
            spans = [slice(bounds[i], bounds[i + 1]) for i in taken]
            packets, rows = [packets[i] for i in taken], [rows[i] for i in taken]
            x, y = np.concatenate([x[span] for span in spans]), np.concatenate([y[span] for span in spans])
        learnt, losses, errors = self.rule.on_targets(packets, rows, x, y, targets, self._step_rate(),
                                                      self.settings["activation"], self._scale())
        for exc in errors:
            self.bad.note(exc.kind, exc.detail)
        if learnt is not None:
            self.outgoing.append(learnt)
        for loss in losses.values():
            if loss is not None:
                self.activity.note_loss(loss)
        return [losses.get(packet) for packet in every]

    def learn_from(self, returned: list[Run]) -> None:
        """Learn from the gradients that came back together in one matrix operation (the staleness rule's
        step), then one bundle per upstream link."""
        learnt, errors = self.rule.on_gradients(returned, self._step_rate(), self.settings["activation"], self._scale())
        for exc in errors:
            self.bad.note(exc.kind, exc.detail)
        if learnt is not None:
            self.counters["backward_bundles"] += 1
            if self.journal is not None:
                self._note(BACKWARD, learnt.packets)
            self.outgoing.append(learnt)
        self._send_gradients()

    def _note(self, kind: str, packets: list[int]) -> None:
        """Journal a bundle; a full journal takes no more (``journal_truncated``)."""
        if len(self.journal) < MAX_JOURNAL:
            self.journal.append([kind, packets])
        else:
            self.journal_truncated = True

    def _send_gradients(self) -> None:
        if self.outgoing:
            self.links.send_gradients(*stacked_learnt(self.outgoing))
            self.outgoing.clear()

    def reward(self, rpe: float, now: float) -> None:
        """Dopamine's RPE, for a rule that learns from it."""
        if self.learning and not self.frozen:
            self.rule.on_reward(rpe, self.learning_rate(), now)

    def learning_rate(self) -> float:
        return self.receptors.learning_rate(self.settings["learning_rate"])

    def _step_rate(self) -> float | None:
        return None if self.frozen else self.learning_rate()

    def _scale(self) -> float:
        """y = act(gain * z) carries the gain into the gradient; the sent output holds 1 - context of y."""
        return self.receptors.modulation.gain * (1.0 - self.context)

    # -- deadlines --------------------------------------------------------------------------------
    def expire(self, now: float) -> float | None:
        """Overdue joins go on without what is missing, stale passes go; the next deadline (or None). Run
        after every round of the loop: with nothing open (an idle or inference-only neuron) it does nothing."""
        joins, grads, rule = self.joins, self.grads, self.rule
        if not (joins or grads or rule.kept):
            return None
        timeout_s = self.settings["join_timeout_ms"] / 1000.0
        joined, returned = joins.overdue(now, timeout_s), grads.overdue(now, timeout_s)
        if joined:
            self.compute(joined)
        if returned:
            self.learn_from(returned)
        rule.expire(now)
        due = [d for d in (joins.next_deadline(timeout_s), grads.next_deadline(timeout_s), rule.next_expiry())
               if d is not None]
        return min(due) if due else None

    # -- links changing while it runs ---------------------------------------------------------------
    def set_inputs(self, layout: list[tuple[str, int]], relay: Callable[[np.ndarray, list], np.ndarray]) -> None:
        """New inputs: joins go on with what they have; passes kept for learning no longer fit the weights:
        dropped (``expired``), not learnt from; ``relay(weights, old layout)`` re-lays the weights."""
        self._settle()
        self.rule.forget()
        old = self.links.layout
        self.links.set_inputs(layout)
        self.rule.weights = relay(self.rule.weights, old)
        self.joins.resize([link.width for link in self.links.inputs])

    def add_output(self, peer: str) -> None:
        """Joins in progress go on as they are: no gradient comes from the new link for them."""
        self.links.add_output(peer)
        self.grads.resize([self.units] * len(self.links.outputs))

    def remove_output(self, peer: str) -> None:
        self._settle()
        self.links.remove_output(peer)
        self.grads.resize([self.units] * len(self.links.outputs))

    def _settle(self) -> None:
        """Before links change, joins in progress go on at once with what they have."""
        joined, returned = self.joins.take_all(), self.grads.take_all()
        if joined:
            self.compute(joined)
        if returned:
            self.learn_from(returned)

