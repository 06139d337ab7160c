"""Learning from gradients that come back late: the staleness rules of pipelined learning.

With many packets in flight (an origin's *window*) a neuron applies other packets' updates between a
packet's forward pass and the return of its gradient: the gradient is *stale* by that many updates.
Plain SGD with a step tuned for one packet at a time diverges then (docs/neuron.md, "Staleness").
A neuron also learns from a *bundle* (every gradient that came back at once) in one matrix operation,
which is a mini-batch: a rule decides the step of that operation from the bundle's size and delays.

Two rules, chosen per network by the topology's ``staleness`` setting:

* ``delay`` (the default): the delay-scaled step of PipeMare and the issue's simulation. A packet's
  delay ``D`` is the number of packets this neuron learnt from between its forward pass and its
  gradient. Taken one after another, the ``n`` packets of a bundle would have had delays ``D .. D+n-1``;
  the coalesced update gives every packet the step of the middle one, ``lr / sqrt(1 + D + (n-1)/2)``
  (``D`` the bundle's mean delay). ``dx`` is computed with the weights before the update.
* ``stash`` (PipeDream-2BW-like accumulation with weight stashing): each packet keeps the weights
  version its forward pass used and its ``dx`` is computed with that version, so forward and backward
  agree; gradients are summed until ``group`` packets have come back, then applied in one update of
  ``lr / sqrt(m)`` times the sum of the ``m`` packets' gradients (a mini-batch of ``m`` with the
  square-root scaling of its step). Updates make new arrays, so a stashed version is a reference; at
  most ``window / group + 1`` versions are alive.

The gradient ``dz`` of a packet is already the mean over its rows (the end neuron divides by them),
so in both rules one packet is one step's worth, whatever its number of rows. All functions are pure
of I/O: the neuron calls :meth:`stamp` at a forward pass and :meth:`learn` with a bundle's gradients.
"""
from __future__ import annotations

import math

import numpy as np

from ._math import batch_gradient

Gradient = tuple[np.ndarray, np.ndarray]
"""A bundle's gradient of the weights and of the bias."""
RULES = ("delay", "stash")
DEFAULT_RULE = "delay"
DEFAULT_GROUP = 16
"""Packets per update of the ``stash`` rule (the topology's ``staleness_group``)."""
DEFAULT_WINDOW = 64
"""Packets in flight per origin by default, once the slow start (:data:`DEFAULT_RAMP`, :data:`DEFAULT_KNEE`) has
opened them: past a stream's first few hundred samples the digits learn as well at 64 as at 32, and the bigger
bundles cost fewer round trips (docs/neuron.md, "Staleness", has the sweep)."""
DEFAULT_RAMP = 64
"""Slow start of every origin's window: one packet in flight at first, one more per this many samples
answered, up to the window. The first samples of a stream are those a network learns most from, and a
stale or delayed step costs them most (a small data set of a few hundred samples is learnt at a small
window); a long stream soon runs at the whole window (docs/neuron.md, "Staleness")."""
DEFAULT_KNEE = 8
"""Where the slow start stops opening the window by one per :data:`DEFAULT_RAMP` samples answered and opens it
by one per sample answered instead (doubling it every round trip): past its first few hundred samples a
stream learns as well at the whole window, and a small window costs round trips."""


def check_rule(name) -> str:
    if name not in RULES:
        raise ValueError(f"staleness must be one of {', '.join(RULES)}; got {name!r}")
    return name


def check_settings(settings: dict) -> None:
    """ValueError unless a layer's ``staleness`` and ``staleness_group`` settings are usable."""
    check_rule(settings.get("staleness", DEFAULT_RULE))
    group = settings.get("staleness_group", DEFAULT_GROUP)
    if type(group) is not int or group < 1:
        raise ValueError(f"staleness_group must be a positive integer; got {group!r}")


def delay_step(learning_rate: float, mean_delay: float, packets: int) -> float:
    """The step of a coalesced ``delay`` update of ``packets`` whose mean delay is ``mean_delay``."""
    return learning_rate / math.sqrt(1.0 + mean_delay + (packets - 1) / 2.0)  # as np.sqrt, without its dispatch


class DelayScaled:
    """``lr / sqrt(1 + D)``: a neuron's own count of the packets it learnt from stamps each forward pass."""

    name = "delay"

    def __init__(self):
        self.applied = 0
        """Packets learnt from so far (frozen neurons learn from none)."""

    def stamp(self, weights: np.ndarray, bias: np.ndarray) -> int:
        return self.applied

    def learn(self, x: np.ndarray, dz: np.ndarray, stamps: list, rows: list[int], weights: np.ndarray,
              bias: np.ndarray, learning_rate: float, grad: Gradient | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """dLoss/dx of the bundle's rows, and the weights and bias after its update (changed in place);
        ``grad``: the bundle's gradient if it was formed already (``_math.batch_gradient``)."""
        dx = dz @ weights.T
        if learning_rate:
            n = len(stamps)
            step = np.float32(delay_step(learning_rate, self.applied - sum(stamps) / n, n))
            grad_w, grad_b = grad or batch_gradient(x, dz)
            weights -= step * grad_w
            bias -= step * grad_b
            self.applied += n
        return dx.astype(np.float32, copy=False), weights, bias

    def reset(self) -> None:
        """Inputs changed: nothing carried over concerns the new weights (the delay count goes on)."""


class Stashed:
    """PipeDream-2BW-like: ``dx`` with the weights the forward used; one update per ``group`` packets."""

    name = "stash"

    def __init__(self, group: int = DEFAULT_GROUP):
        if group < 1:
            raise ValueError(f"staleness_group must be at least 1; got {group!r}")
        self.group = group
        self.summed: tuple[np.ndarray, np.ndarray] | None = None
        self.count = 0
        """Packets whose gradients are summed in ``summed`` and not yet applied."""

    def stamp(self, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return weights

    def learn(self, x: np.ndarray, dz: np.ndarray, stamps: list, rows: list[int], weights: np.ndarray,
              bias: np.ndarray, learning_rate: float, grad: Gradient | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """dLoss/dx of the bundle's rows (each packet's with its stashed weights), and the weights and
        bias after the update if the group is complete (new arrays), else the same ones; ``grad`` as for
        :meth:`DelayScaled.learn`."""
        dx = _with_stashed(dz, stamps, rows, weights)
        if not learning_rate:
            return dx, weights, bias
        grad_w, grad_b = grad or batch_gradient(x, dz)
        if self.summed is None or self.summed[0].shape != grad_w.shape:
            self.summed, self.count = (grad_w, grad_b), 0
        else:
            self.summed = (self.summed[0] + grad_w, self.summed[1] + grad_b)
        self.count += len(stamps)
        if self.count < self.group:
            return dx, weights, bias
        step = np.float32(learning_rate / np.sqrt(self.count))
        weights, bias = weights - step * self.summed[0], bias - step * self.summed[1]
        self.summed, self.count = None, 0
        return dx, weights, bias

    def reset(self) -> None:
        """Inputs changed: summed gradients no longer fit the weights."""
        self.summed, self.count = None, 0


def _with_stashed(dz: np.ndarray, stamps: list, rows: list[int], current: np.ndarray) -> np.ndarray:
    """``dz @ W.T`` with each packet's own weights version (one product per version, usually one)."""
    if all(s is stamps[0] for s in stamps) and stamps[0].shape == current.shape:
        return (dz @ stamps[0].T).astype(np.float32, copy=False)
    dx = np.empty((dz.shape[0], current.shape[0]), dtype=np.float32)
    bounds = np.cumsum([0, *rows])
    for version in {id(s): s for s in stamps}.values():
        weights = version if version.shape == current.shape else current  # relaid since: use the current
        at = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(stamps) if s is version])
        dx[at] = dz[at] @ weights.T
    return dx


def make_rule(name: str = DEFAULT_RULE, group: int = DEFAULT_GROUP) -> DelayScaled | Stashed:
    """A fresh rule by its topology name."""
    return DelayScaled() if check_rule(name) == "delay" else Stashed(int(group))
