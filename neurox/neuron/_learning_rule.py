"""How a neuron's weights change: backpropagation, Oja/Sanger and three-factor learning behind one interface.

A :class:`LearningRule` owns the neuron's weights and bias and is told of the three moments a rule
may learn at; each rule acts on the ones it needs and ignores the others:

- ``on_forward(x, y, learning, ...)``, when outputs are computed: a local rule learns here (Oja
  updates; three-factor explores and tags). Returns what is sent on.
- ``keep(packet, x, y, now)`` then ``on_gradients([(packet, grad), ...], ...)``: backpropagation keeps
  each learning packet's forward pass until its gradient comes back; the gradients that come back
  together (a bundle) are learnt from in one matrix operation, which returns dLoss/dx per packet for
  upstream (``on_targets`` at the end of the network, where the loss gives the first gradient).
- ``on_reward(rpe, ...)``: dopamine's reward prediction error, three-factor's third factor.

**Per-packet learning state is explicit.** ``keep`` stores a :class:`Pass` holding the packet's
input, output, time and the *stamp* of the network's staleness rule (``_staleness``): how many
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

import numpy as np

from ..runtime import FrameError
from ._frames import slices
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


class Pass:
    """One packet's forward pass kept for learning, with the staleness rule's stamp of that moment."""

    __slots__ = ("x", "y", "at", "stamp")

    def __init__(self, x: np.ndarray, y: np.ndarray, at: float, stamp):
        self.x, self.y, self.at, self.stamp = x, y, at, stamp


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

    def keep(self, packet: int, x: np.ndarray, y: np.ndarray, now: float) -> None:
        """A learning packet's forward pass, for its gradient to come."""

    def on_gradients(self, returned: list[tuple], lr: float | None, activation: str, scale: float
                     ) -> tuple[list[tuple[int, np.ndarray]], list[FrameError]]:
        """Gradients came back: dLoss/dx for upstream per packet learnt from, and errors (a local rule: none)."""
        return [], []

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
    """Backpropagation across processes: each learning packet's pass is kept until its gradient comes; the
    gradients that come back together (a bundle) are learnt from in one matrix operation, with the step
    of the network's staleness rule (``_staleness``: ``delay`` or ``stash``)."""

    name = "backprop"
    sends_gradients = True

    def __init__(self, *args, staleness: str = DEFAULT_STALENESS, group: int = DEFAULT_GROUP, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes: OrderedDict[int, Pass] = OrderedDict()
        self.staleness = make_staleness(staleness, group)

    def keep(self, packet: int, x: np.ndarray, y: np.ndarray, now: float) -> None:
        self.passes[packet] = Pass(x, y, now, self.staleness.stamp(self.weights, self.bias))
        if len(self.passes) > MAX_KEPT:
            self.passes.popitem(last=False)
            self.counters["expired"] += 1

    def on_gradients(self, returned: list[tuple], lr: float | None, activation: str, scale: float
                     ) -> tuple[list[tuple[int, np.ndarray]], list[FrameError]]:
        """Gradients ``(packet, grad)`` came back together: dLoss/dx of each packet learnt from, and the
        errors of those that do not fit their pass. The activation's derivative is taken once for the bundle."""
        packets, passes, grads, errors = [], [], [], []
        for packet, grad, *_ in returned:
            kept = self.passes.pop(packet, None)
            if kept is None:
                self.counters["late"] += 1
            elif grad.shape != kept.y.shape:
                errors.append(FrameError("wrong_shape", f"gradient {grad.shape} for outputs {kept.y.shape}"))
            else:
                packets.append(packet)
                passes.append(kept)
                grads.append(grad)
        if not packets:
            return [], errors
        self.counters["backwards"] += len(packets)
        y = _stacked([k.y for k in passes])
        dz = _stacked(grads) * derivative_from_output(y, activation)
        return self.learn(packets, [k.x for k in passes], dz, [k.stamp for k in passes], lr, scale), errors

    def on_targets(self, ends: list[tuple], lr: float | None, activation: str, scale: float
                   ) -> tuple[list[tuple[int, np.ndarray]], dict[int, float | None], list[FrameError]]:
        """At the end of the network, for ``(packet, x, y, targets)`` just computed: the loss gives the first
        gradient. dLoss/dx of each packet learnt from, the losses by packet (None when not finite: nothing
        learnt from it), and the errors of targets that do not fit."""
        if len(ends) > 1:
            try:
                dz, values = output_gradients([y for _, _, y, _ in ends], [t for *_, t in ends], activation)
            except (ValueError, TypeError):
                pass  # one packet's targets do not fit: each on its own below, to refuse only those
            else:
                losses = {packet: (loss if math.isfinite(loss) else None) for (packet, *_), loss in zip(ends, values)}
                stamp = self.staleness.stamp(self.weights, self.bias)
                return (self.learn([e[0] for e in ends], [e[1] for e in ends], dz, [stamp] * len(ends), lr, scale),
                        losses, [])
        packets, xs, dzs, losses, errors = [], [], [], {}, []
        for packet, x, y, targets in ends:
            try:
                dz, loss = output_gradient(y, targets, activation)
            except (ValueError, TypeError) as exc:
                errors.append(FrameError("bad_target", str(exc)))
                continue
            losses[packet] = loss if math.isfinite(loss) else None
            packets.append(packet)
            xs.append(x)
            dzs.append(dz)
        if not packets:
            return [], losses, errors
        stamp = self.staleness.stamp(self.weights, self.bias)
        return self.learn(packets, xs, _stacked(dzs), [stamp] * len(packets), lr, scale), losses, errors

    def learn(self, packets: list[int], xs: list[np.ndarray], dz: np.ndarray, stamps: list, lr: float | None,
              scale: float) -> list[tuple[int, np.ndarray]]:
        """One step for a bundle: the packets, their inputs, their gradients ``dz`` (rows stacked in packet
        order) and stamps; dLoss/dx per packet and the update the staleness rule makes of it (``lr`` None:
        frozen, the weights stay). A packet whose gradient is not finite is refused alone (zeros go upstream
        for it); a bundle whose summed gradient overflows, whole."""
        if not packets:
            return []
        rows = [x.shape[0] for x in xs]
        if lr is not None and not math.isfinite(np.add.reduce(dz, axis=None)) and not np.isfinite(dz).all():
            # one check for the bundle (its sum is finite only if every value is), per packet only if it fails
            dz = self._refuse_non_finite(dz, rows)
        x = _stacked(xs)
        if scale != 1.0:
            dz = dz * np.float32(scale)
        step, grad = 0.0, None
        if lr is not None:
            norm_sq, grad = update_norm_sq(x, dz)
            factor = self.guard(norm_sq)
            if not factor:
                return [(p, np.zeros((n, x.shape[1]), np.float32)) for p, n in zip(packets, rows)]
            step = lr * factor
        dx, self.weights, self.bias = self.staleness.learn(x, dz.astype(np.float32, copy=False), stamps, rows,
                                                           self.weights, self.bias, step, grad)
        if step:
            self.counters["updates"] += len(packets)
        return list(zip(packets, slices(dx, rows)))

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
        return next(iter(self.passes.values())).at + KEPT_TTL_S if self.passes else None

    def expire(self, now: float) -> None:
        passes = self.passes
        while passes:
            packet, kept = next(iter(passes.items()))
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
