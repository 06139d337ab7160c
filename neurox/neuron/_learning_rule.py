"""How a neuron's weights change: backpropagation, Oja/Sanger and three-factor learning behind one interface.

A :class:`LearningRule` owns the neuron's weights and bias and is told of the three moments a rule
may learn at; each rule acts on the ones it needs and ignores the others:

- ``on_forward(x, y, learning, ...)``, when outputs are computed: a local rule learns here (Oja
  updates; three-factor explores and tags). Returns what is sent on.
- ``keep(packet, x, y, now)`` then ``on_gradient(packet, grad, ...)``: backpropagation keeps each
  learning packet's forward pass until its gradient comes back, then updates and returns dLoss/dx
  for upstream (``on_targets`` at the end of the network, where the loss gives the first gradient).
- ``on_reward(rpe, ...)``: dopamine's reward prediction error, three-factor's third factor.

**Per-packet learning state is explicit.** ``keep`` stores a :class:`Pass` holding the packet's
input, output, time and ``version``: the number of updates this neuron had applied when it computed
that forward pass. At the gradient, ``delay = updates now - version`` -- the updates applied in
between, i.e. how stale this gradient is -- is handed to :meth:`Backprop.step`, which asks
:meth:`Backprop.step_size` for the learning rate to use. **That is the staleness hook** (issue 16):
a delay-scaled rate overrides ``step_size(lr, delay)`` (e.g. ``lr / sqrt(1 + delay)``); weight
stashing stores the weights used by the forward pass in the ``Pass`` at ``keep`` and computes dx
with them in ``step``. Both see every packet's delay; nothing else in the neuron needs to change.

**Numerical safety.** Every update passes :meth:`LearningRule.guard` before it touches a weight:
the gradient's norm (weights and bias together) is computed first; if it is not finite the update
is refused (counted ``refused_updates``, reported through ``on_refused``, the weights untouched);
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
from ._math import derivative_from_output, descend, output_gradient, update_norm_sq
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
    """One packet's forward pass kept for learning, with the update count it was computed at."""

    __slots__ = ("x", "y", "at", "version")

    def __init__(self, x: np.ndarray, y: np.ndarray, at: float, version: int):
        self.x, self.y, self.at, self.version = x, y, at, version


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

    def on_gradient(self, packet: int, grad: np.ndarray, lr: float | None, activation: str,
                    scale: float) -> np.ndarray | None:
        """A packet's gradient came back: dLoss/dx for upstream, or None (nothing to send)."""
        return None

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
    """Backpropagation across processes: each learning packet's pass is kept until its gradient comes."""

    name = "backprop"
    sends_gradients = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes: OrderedDict[int, Pass] = OrderedDict()

    def keep(self, packet: int, x: np.ndarray, y: np.ndarray, now: float) -> None:
        self.passes[packet] = Pass(x, y, now, self.counters["updates"])
        if len(self.passes) > MAX_KEPT:
            self.passes.popitem(last=False)
            self.counters["expired"] += 1

    def on_gradient(self, packet: int, grad: np.ndarray, lr: float | None, activation: str,
                    scale: float) -> np.ndarray | None:
        kept = self.passes.pop(packet, None)
        if kept is None:
            self.counters["late"] += 1
            return None
        if grad.shape != kept.y.shape:
            raise FrameError("wrong_shape", f"gradient {grad.shape} for outputs {kept.y.shape}")
        self.counters["backwards"] += 1
        dz = grad * derivative_from_output(kept.y, activation)
        return self.step(kept.x, dz if scale == 1.0 else dz * np.float32(scale), lr,
                         self.counters["updates"] - kept.version)

    def on_targets(self, x: np.ndarray, y: np.ndarray, targets, lr: float | None, activation: str,
                   scale: float) -> tuple[np.ndarray, float | None]:
        """At the end of the network: learn from the loss; dLoss/dx and the loss (None when the update
        is not finite: then so was the gradient, and the update was refused). ValueError for targets that do not fit."""
        dz, loss = output_gradient(y, targets, activation)
        dx = self.step(x, dz if scale == 1.0 else dz * np.float32(scale), lr, 0)
        return dx, loss if math.isfinite(loss) else None

    def step(self, x: np.ndarray, dz: np.ndarray, lr: float | None, delay: int) -> np.ndarray:
        """dLoss/dx (with the weights before the update), and the update of a gradient ``delay`` updates
        stale (``lr`` None: frozen, the weights stay). A refused update sends zeros upstream."""
        if lr is None:
            return (dz @ self.weights.T).astype(np.float32, copy=False)
        factor = self.guard(update_norm_sq(x, dz))
        if not factor:
            return np.zeros_like(x)
        dx = descend(x, dz, self.weights, self.bias, self.step_size(lr, delay) * factor)
        self.counters["updates"] += 1
        return dx

    def step_size(self, lr: float, delay: int) -> float:
        """The learning rate for a gradient ``delay`` updates stale: the staleness hook (see the module)."""
        return lr

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
        self.counters["expired"] += len(self.passes)
        self.passes.clear()


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
        factor = self.guard(rpe * rpe * (float(np.vdot(tags[0], tags[0])) + float(np.vdot(tags[1], tags[1]))))
        if factor:
            three_factor_update(self.weights, self.bias, tags, rpe * factor, lr)
            self.counters["updates"] += 1


RULES = {rule.name: rule for rule in (Backprop, Oja, ThreeFactor)}


def make_rule(plasticity: str, *args, **kwargs) -> LearningRule:
    """The rule named by a layer's ``plasticity`` setting (``_plasticity.PLASTICITY``)."""
    return RULES[plasticity](*args, **kwargs)
