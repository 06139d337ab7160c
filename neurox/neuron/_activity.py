"""What a neuron tells about its own activity: running averages the self-reshaper decides from."""
from __future__ import annotations

import numpy as np

SATURATED = 0.95
"""A unit is saturated when its output is this close to its activation's bound (tanh, sigmoid)."""
SMOOTHING = 0.05
"""Weight of the newest batch in the exponential averages."""


class Activity:
    """Exponential averages of the mean |output|, the share of saturated units and (at the end) the loss."""

    def __init__(self):
        self.mean_abs: float | None = None
        self.saturation: float | None = None
        self.loss: float | None = None

    def note_outputs(self, y: np.ndarray, activation: str) -> None:
        """One bundle's outputs (a sum and a count: ``mean`` costs a neuron several microseconds a bundle)."""
        magnitude = np.abs(y)
        self.mean_abs = _average(self.mean_abs, float(np.add.reduce(magnitude, axis=None)) / magnitude.size)
        self.saturation = _average(self.saturation, saturation_share(y, magnitude, activation))

    def note_loss(self, loss: float) -> None:
        self.loss = _average(self.loss, loss)

    def snapshot(self) -> dict:
        return {"mean_abs": self.mean_abs, "saturation": self.saturation, "loss": self.loss}


def saturation_share(y: np.ndarray, magnitude: np.ndarray, activation: str) -> float:
    """The share of outputs near the activation's bounds (0 for unbounded activations); ``magnitude`` is ``|y|``."""
    if activation == "tanh":
        return np.count_nonzero(magnitude > SATURATED) / y.size
    if activation == "sigmoid":
        return np.count_nonzero((y > SATURATED) | (y < 1 - SATURATED)) / y.size
    return 0.0


def _average(previous: float | None, value: float) -> float:
    return value if previous is None else (1 - SMOOTHING) * previous + SMOOTHING * value
