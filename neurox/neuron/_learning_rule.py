"""How a neuron's weights change: backpropagation, Oja/Sanger and three-factor learning behind one interface.

A :class:`LearningRule` owns the neuron's weights and bias and is told of the three moments a rule
may learn at; each rule acts on the ones it needs and ignores the others:

- ``on_forward(x, y, learning, ...)``, when outputs are computed: a local rule learns here (Oja
  updates; three-factor explores and tags). Returns what is sent on.
- ``keep(packets, rows, x, y, learn, now)`` then ``on_gradients(runs, ...)``: backpropagation keeps
  each bundle's forward pass until the gradients of its learning packets come back; the gradients that
  come back together (a bundle) are learnt from in one matrix operation, which returns dLoss/dx of
  those packets for upstream (``on_targets`` at the end of the network, where the loss gives the
  first gradient).
- ``on_reward(rpe, ...)``: dopamine's reward prediction error, three-factor's third factor.

**Per-packet learning state is explicit.** ``keep`` stores a :class:`Pass` holding the bundle's
inputs, outputs, time and the *stamp* of the network's staleness rule (``_staleness``): how many
packets this neuron had learnt from when it computed that forward pass (``delay``), or the weights
version it used (``stash``). The rule turns a bundle's stamps into its step (``lr / sqrt(1 + delay)``)
or computes dx with the stashed weights; docs/neuron.md, "Staleness", says what a coalesced update
equals and why.

**Numerical safety.** Every update passes :meth:`LearningRule.guard` before it touches a weight:
the gradient's norm (weights and bias together) is computed first; if it is not finite the update
is refused (counted ``refused_updates``, reported through ``on_refused``, the weights untouched; in
a bundle, a packet whose own gradient holds nan or inf is refused alone);
if it exceeds ``max_grad_norm`` (default :data:`MAX_GRAD_NORM`) the step is scaled down to that
norm (counted ``clipped_updates``). With finite weights and a bounded step, no weight can become
non-finite, so nothing downstream of a bad packet (a ``nan`` target, an overflowing gradient) ever
is.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from itertools import accumulate
from typing import NamedTuple

import numpy as np

from ..runtime import FrameError
from ._frames import slices
from ._joins import Run, stacked_runs
from ._math import derivative_from_output, output_gradient, output_gradients, update_norm_sq
from ._staleness import DEFAULT_GROUP, DEFAULT_RULE as DEFAULT_STALENESS, make_rule as make_staleness
from ._plasticity import (EligibilityTrace, eligibility, explore, oja_delta, tempered,
                          three_factor_update)

MAX_GRAD_NORM = 100.0
"""A step's gradient (one packet's, weights and bias together) is scaled down to this norm. Learning
the digits, per-packet norms stay below about 5 (see docs/neuron.md): the clip only acts on what
would otherwise blow the weights up, such as a regression target of raw magnitude."""
KEPT_TTL_S = 10.0
"""A forward pass kept for learning is dropped if its gradient has not come back by then."""
MAX_KEPT = 4096
"""Forward passes kept at once; beyond this the oldest is dropped (counted ``expired``)."""


class Learnt(NamedTuple):
    """dLoss/dx of packets learnt from together, their rows stacked (``rows`` each), for upstream."""

    packets: list
    rows: list
    dx: np.ndarray


def stacked_learnt(learnt: list[Learnt]) -> Learnt:
    """Several bundles' dLoss/dx as one (their packets in order)."""
    if len(learnt) == 1:
        return learnt[0]
    return Learnt([p for one in learnt for p in one.packets], [n for one in learnt for n in one.rows],
                  np.concatenate([one.dx for one in learnt]))


class Pass:
    """A bundle's forward pass kept for learning: its packets, their inputs and outputs (rows stacked;
    packet ``i``'s from ``starts[i]`` to ``starts[i + 1]``), when, and the staleness rule's stamp then."""

    __slots__ = ("packets", "rows", "x", "y", "starts", "at", "stamp")

    def __init__(self, packets: list, rows: list, x: np.ndarray, y: np.ndarray, at: float, stamp):
        self.packets, self.rows, self.x, self.y, self.at, self.stamp = packets, rows, x, y, at, stamp
        self.starts = [0, *accumulate(rows)]

    def rows_of(self, index: int) -> slice:
        return slice(self.starts[index], self.starts[index + 1])


class LearningRule:
    """The weights and how they change. ``counters`` is the neuron's (``updates`` is its version);
    ``on_refused(reason)`` is told of each refused update."""

    name = ""
    sends_gradients = False
    """True: gradients go upstream (backprop); False: a local rule, which stops them."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, counters: dict, rng: np.random.Generator,
                 on_refused: Callable[[str], None], max_grad_norm: float = MAX_GRAD_NORM):
        self.weights, self.bias = weights, bias
        self.counters = counters
        self.rng = rng
        self.on_refused = on_refused
        self.max_grad_norm = max_grad_norm

    def guard(self, norm_sq: float) -> float:
        """The factor a step whose gradient has squared norm ``norm_sq`` is scaled by: 1, less to
        clip it to ``max_grad_norm``, or 0 to refuse it (its norm is not finite)."""
        if not math.isfinite(norm_sq):
            self.counters["refused_updates"] += 1
            self.on_refused(f"{self.name}: a non-finite gradient")
            return 0.0
        if norm_sq > self.max_grad_norm * self.max_grad_norm:
            self.counters["clipped_updates"] += 1
            return self.max_grad_norm / math.sqrt(norm_sq)
        return 1.0

    # -- the moments a rule learns at (each rule overrides what it uses) ------------------------
    def on_forward(self, x: np.ndarray, y: np.ndarray, learning: list[slice], lr: float, activation: str,
                   exploration: float, now: float) -> np.ndarray:
        """Outputs ``y`` for rows ``x`` were computed; ``learning`` are the rows of packets to learn from."""
        return y

    def keep(self, packets: list, rows: list, x: np.ndarray, y: np.ndarray, learn: list, now: float) -> None:
        """A bundle's forward pass, for the gradients of its learning packets to come."""

    def on_gradients(self, returned: list[Run], lr: float | None, activation: str, scale: float
                     ) -> tuple[Learnt | None, list[FrameError]]:
        """Gradients came back: dLoss/dx for upstream of the packets learnt from, and errors (a local rule:
        none)."""
        return None, []

    def on_reward(self, rpe: float, lr: float, now: float) -> None:
        """Dopamine brought a reward prediction error."""

    # -- kept passes ------------------------------------------------------------------------------
    @property
    def kept(self) -> int:
        return 0

    def next_expiry(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        """Drop the forward passes whose gradient is overdue (counted ``expired``)."""

    def forget(self) -> None:
        """Drop every kept pass (the inputs changed: they no longer fit the weights)."""


class Backprop(LearningRule):
    """Backpropagation across processes: a bundle's forward pass is kept until its learning packets'
    gradients come; the gradients that come back together (a bundle) are learnt from in one matrix
    operation, with the step of the network's staleness rule (``_staleness``: ``delay`` or ``stash``)."""

    name = "backprop"
    sends_gradients = True

    def __init__(self, *args, staleness: str = DEFAULT_STALENESS, group: int = DEFAULT_GROUP, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes: OrderedDict[int, tuple[Pass, int]] = OrderedDict()
        """Each packet awaiting its gradient: its bundle's pass and its place in it."""
        self.staleness = make_staleness(staleness, group)

    def keep(self, packets: list, rows: list, x: np.ndarray, y: np.ndarray, learn: list, now: float) -> None:
        """A bundle's forward pass (``x`` and ``y`` its rows stacked, ``rows`` each), kept for the gradients
        to come of its packets that ``learn``."""
        kept, passes = Pass(packets, rows, x, y, now, self.staleness.stamp(self.weights, self.bias)), self.passes
        passes.update((packet, (kept, i)) for i, (packet, lrn) in enumerate(zip(packets, learn)) if lrn)
        for _ in range(len(passes) - MAX_KEPT):
            passes.popitem(last=False)
            self.counters["expired"] += 1

    def on_gradients(self, returned: list[Run], lr: float | None, activation: str, scale: float
                     ) -> tuple[Learnt | None, list[FrameError]]:
        """Gradients came back together (runs of packets, their rows stacked): dLoss/dx of the packets learnt
        from, and the errors of those that do not fit their pass. The activation's derivative is taken once
        for the bundle; when the gradients are those of one kept bundle's packets, in order (the usual
        case), its inputs and outputs are taken whole."""
        run = stacked_runs(returned)
        entries = [self.passes.pop(packet, None) for packet in run.packets]
        first = entries[0]
        if first is not None and all(entry is not None and entry[0] is first[0] for entry in entries):
            kept, at = first
            end = at + len(entries)
            if entries[-1][1] == end - 1 and kept.packets[at:end] == run.packets and kept.rows[at:end] == run.rows:
                span = slice(kept.starts[at], kept.starts[end])
                self.counters["backwards"] += len(entries)
                dz = run.value * derivative_from_output(kept.y[span], activation)
                return self.learn(run.packets, run.rows, kept.x[span], dz, [kept.stamp] * len(entries), lr,
                                  scale), []
        return self._on_gradients_one_by_one(run, entries, activation, lr, scale)

    def _on_gradients_one_by_one(self, run: Run, entries: list, activation: str, lr: float | None, scale: float
                                 ) -> tuple[Learnt | None, list[FrameError]]:
        packets, rows, xs, ys, grads, stamps, errors = [], [], [], [], [], [], []
        for packet, grad, entry in zip(run.packets, slices(run.value, run.rows), entries):
            if entry is None:
                self.counters["late"] += 1
                continue
            kept, index = entry
            y = kept.y[kept.rows_of(index)]
            if grad.shape != y.shape:
                errors.append(FrameError("wrong_shape", f"gradient {grad.shape} for outputs {y.shape}"))
                continue
            packets.append(packet)
            rows.append(y.shape[0])
            xs.append(kept.x[kept.rows_of(index)])
            ys.append(y)
            grads.append(grad)
            stamps.append(kept.stamp)
        if not packets:
            return None, errors
        self.counters["backwards"] += len(packets)
        dz = _stacked(grads) * derivative_from_output(_stacked(ys), activation)
        return self.learn(packets, rows, _stacked(xs), dz, stamps, lr, scale), errors

    def on_targets(self, packets: list, rows: list, x: np.ndarray, y: np.ndarray, targets: list,
                   lr: float | None, activation: str, scale: float
                   ) -> tuple[Learnt | None, dict[int, float | None], list[FrameError]]:
        """At the end of the network, for packets just computed (``x`` and ``y`` their rows stacked, ``rows``
        each) with their ``targets``: the loss gives the first gradient. dLoss/dx of the packets learnt
        from, the losses by packet (None when not finite: nothing learnt from it), and the errors of
        targets that do not fit."""
        stamp = self.staleness.stamp(self.weights, self.bias)
        if len(packets) > 1:
            try:
                dz, values = output_gradients(y, rows, targets, activation)
            except (ValueError, TypeError):
                pass  # one packet's targets do not fit: each on its own below, to refuse only those
            else:
                losses = {packet: (loss if math.isfinite(loss) else None) for packet, loss in zip(packets, values)}
                return self.learn(packets, rows, x, dz, [stamp] * len(packets), lr, scale), losses, []
        kept, kept_rows, xs, dzs, losses, errors = [], [], [], [], {}, []
        for packet, n, x_i, y_i, t in zip(packets, rows, slices(x, rows), slices(y, rows), targets):
            try:
                dz, loss = output_gradient(y_i, t, activation)
            except (ValueError, TypeError) as exc:
                errors.append(FrameError("bad_target", str(exc)))
                continue
            losses[packet] = loss if math.isfinite(loss) else None
            kept.append(packet)
            kept_rows.append(n)
            xs.append(x_i)
            dzs.append(dz)
        if not kept:
            return None, losses, errors
        return self.learn(kept, kept_rows, _stacked(xs), _stacked(dzs), [stamp] * len(kept), lr, scale), losses, errors

    def learn(self, packets: list[int], rows: list[int], x: np.ndarray, dz: np.ndarray, stamps: list,
              lr: float | None, scale: float) -> Learnt | None:
        """One step for a bundle: the packets, their inputs ``x`` and gradients ``dz`` (rows stacked in packet
        order, ``rows`` each) and stamps; dLoss/dx of the packets, and the update the staleness rule makes
        of it (``lr`` None: frozen, the weights stay). A packet whose gradient is not finite is refused
        alone (zeros go upstream for it); a bundle whose summed gradient overflows, whole."""
        if not packets:
            return None
        if lr is not None and not math.isfinite(np.add.reduce(dz, axis=None)) and not np.isfinite(dz).all():
            # one check for the bundle (its sum is finite only if every value is), per packet only if it fails
            dz = self._refuse_non_finite(dz, rows)
        if scale != 1.0:
            dz = dz * np.float32(scale)
        step, grad = 0.0, None
        if lr is not None:
            norm_sq, grad = update_norm_sq(x, dz)
            factor = self.guard(norm_sq)
            if not factor:
                return Learnt(packets, rows, np.zeros((x.shape[0], x.shape[1]), np.float32))
            step = lr * factor
        dx, self.weights, self.bias = self.staleness.learn(x, dz.astype(np.float32, copy=False), stamps, rows,
                                                           self.weights, self.bias, step, grad)
        if step:
            self.counters["updates"] += len(packets)
        return Learnt(packets, rows, dx)

    def _refuse_non_finite(self, dz: np.ndarray, rows: list[int]) -> np.ndarray:
        """``dz`` with the rows of each packet whose gradient holds nan or inf set to zero (refused: counted,
        and reported once)."""
        dz = dz.copy()
        refused = 0
        for block in slices(dz, rows):
            if not np.isfinite(block).all():
                block[...] = 0.0
                refused += 1
        self.counters["refused_updates"] += refused
        self.on_refused(f"{self.name}: a non-finite gradient")
        return dz

    @property
    def kept(self) -> int:
        return len(self.passes)

    def next_expiry(self) -> float | None:
        return next(iter(self.passes.values()))[0].at + KEPT_TTL_S if self.passes else None

    def expire(self, now: float) -> None:
        passes = self.passes
        while passes:
            packet, (kept, _) = next(iter(passes.items()))
            if now - kept.at < KEPT_TTL_S:
                return
            del passes[packet]
            self.counters["expired"] += 1

    def forget(self) -> None:
        """The inputs changed: passes and anything the staleness rule summed no longer fit the weights."""
        self.counters["expired"] += len(self.passes)
        self.passes.clear()
        self.staleness.reset()


class Oja(LearningRule):
    """Hebbian learning kept stable by Oja's decay (Sanger's rule for several units), at the forward pass."""

    name = "oja"

    def on_forward(self, x, y, learning, lr, activation, exploration, now):
        for rows in learning:
            delta = oja_delta(x[rows], self.weights)
            factor = self.guard(float(np.vdot(delta, delta)))
            if factor:
                self.weights += np.float32(lr * factor) * delta
                self.counters["updates"] += 1
        return y


class ThreeFactor(LearningRule):
    """Reward-modulated Hebbian learning: explore and tag at the forward pass, learn when dopamine comes."""

    name = "three_factor"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace: EligibilityTrace | None = None

    def on_forward(self, x, y, learning, lr, activation, exploration, now):
        rows = np.zeros(x.shape[0], dtype=bool)
        for packet_rows in learning:
            rows[packet_rows] = True
        y_mean = tempered(y[rows], activation, exploration)
        y[rows] = explore(y_mean, activation, self.rng, exploration)
        if self.trace is None or self.trace.weights.shape != self.weights.shape:
            self.trace = EligibilityTrace(*self.weights.shape)
        self.trace.add(eligibility(x[rows], y[rows], y_mean), now)
        self.counters["updates"] += len(learning)
        return y

    def on_reward(self, rpe: float, lr: float, now: float) -> None:
        """Credit the eligibility tags with the RPE, consuming them."""
        if self.trace is None:
            return
        tags = self.trace.take(now)
        factor = self.guard(rpe * rpe * float(np.vdot(tags, tags)))
        if factor:
            three_factor_update(self.weights, tags, rpe * factor, lr)
            self.counters["updates"] += 1


RULES = {rule.name: rule for rule in (Backprop, Oja, ThreeFactor)}


def _stacked(blocks: list[np.ndarray]) -> np.ndarray:
    """Row blocks one under the other (the block itself when there is one)."""
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def make_rule(plasticity: str, *args, **kwargs) -> LearningRule:
    """The rule named by a layer's ``plasticity`` setting (``_plasticity.PLASTICITY``)."""
    return RULES[plasticity](*args, **kwargs)
