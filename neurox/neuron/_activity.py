"""What a neuron tells about its own activity: running averages the self-reshaper decides from.

A bundle's outputs are only noted when computed (a list append); the averages take them in together
-- at the next snapshot, or every ``FOLD`` bundles -- in a few array operations for all of them, with
the values bundle by bundle that taking each in at once gave: four numpy calls per bundle were a tenth
of a neuron's work on a lone packet. The arrays noted must not change afterwards (none does: outputs
are sent, kept for learning and differentiated, never written in place). A bundle of more rows than
``SAMPLED_ROWS`` is judged by that many of them, evenly spaced: the averages are estimates for the
self-reshaper's heuristics, and every row of a batched bundle was a fifth of the neuron's work on it.
"""
from __future__ import annotations

import numpy as np

SATURATED = 0.95
"""A unit is saturated when its output is this close to its activation's bound (tanh, sigmoid)."""
SMOOTHING = 0.05
"""Weight of the newest batch in the exponential averages."""
FOLD = 64
"""Bundles noted at most before the averages take them in: a fold of 64 is a few tens of microseconds
of the neuron's time (one of 256 was a quarter of a millisecond, in a report: a stall requests waited out)."""
SAMPLED_ROWS = 64
"""Rows of a bundle its figures are taken from at most (evenly spaced)."""


class Activity:
    """Exponential averages of the mean |output|, the share of saturated units and (at the end) the loss."""

    def __init__(self):
        self.mean_abs: float | None = None
        self.saturation: float | None = None
        self.loss: float | None = None
        self.noted: list[np.ndarray] = []
        self.activations: list[str] = []

    def note_outputs(self, y: np.ndarray, activation: str) -> None:
        """One bundle's outputs (rows x units, the units always the neuron's) and its activation."""
        rows = y.shape[0]
        self.noted.append(y if rows <= SAMPLED_ROWS else y[::rows // SAMPLED_ROWS][:SAMPLED_ROWS])
        self.activations.append(activation)
        if len(self.noted) >= FOLD:
            self.fold()

    def note_loss(self, loss: float) -> None:
        self.loss = _average(self.loss, loss)

    def snapshot(self) -> dict:
        self.fold()
        return {"mean_abs": self.mean_abs, "saturation": self.saturation, "loss": self.loss}

    def fold(self) -> None:
        """Take every bundle noted into the averages, oldest first: in closed form, as many array operations
        for many bundles as for one."""
        if not self.noted:
            return
        mean_abs, saturation = bundle_figures(self.noted, self.activations)
        self.mean_abs = _average_all(self.mean_abs, mean_abs)
        self.saturation = _average_all(self.saturation, saturation)
        self.noted, self.activations = [], []


def bundle_figures(ys: list[np.ndarray], activations: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per bundle (``ys``, one activation each): the mean |output| and the share of outputs near the
    activation's bounds (0 for unbounded activations), in one array operation each for all the bundles
    (row sums as products with ones: numpy's sum along the rows of a narrow array costs ten times more)."""
    whole = ys[0] if len(ys) == 1 else np.concatenate(ys)
    rows = np.fromiter(map(len, ys), np.intp, len(ys))
    starts = np.cumsum(rows) - rows
    sizes = rows * whole.shape[1]
    magnitude = np.abs(whole)
    ones = np.ones(whole.shape[1], dtype=magnitude.dtype)
    mean_abs = np.add.reduceat(magnitude @ ones, starts) / sizes
    kinds = set(activations)
    if len(kinds) == 1:
        return mean_abs, _saturated_share(whole, magnitude, activations[0], starts, sizes, ones)
    shares = {activation: _saturated_share(whole, magnitude, activation, starts, sizes, ones) for activation in kinds}
    return mean_abs, np.array([shares[activation][i] for i, activation in enumerate(activations)])


def _saturated_share(y: np.ndarray, magnitude: np.ndarray, activation: str, starts: np.ndarray,
                     sizes: np.ndarray, ones: np.ndarray) -> np.ndarray:
    if activation == "tanh":
        near = magnitude > SATURATED
    elif activation == "sigmoid":
        near = (y > SATURATED) | (y < 1 - SATURATED)
    else:
        return np.zeros(len(sizes))
    return np.add.reduceat(near.astype(ones.dtype) @ ones, starts) / sizes


def _average_all(previous: float | None, values: np.ndarray) -> float:
    """``previous`` averaged with each of ``values`` in turn (the first seeds an empty average):
    (1 - s)^n previous + the sum of s (1 - s)^(n-1-i) values[i]."""
    if previous is None:
        previous, values = float(values[0]), values[1:]
    keep = (1 - SMOOTHING) ** np.arange(len(values) - 1, -1, -1)
    return float((1 - SMOOTHING) ** len(values) * previous + SMOOTHING * np.dot(keep, values))


def _average(previous: float | None, value: float) -> float:
    return value if previous is None else (1 - SMOOTHING) * previous + SMOOTHING * value
