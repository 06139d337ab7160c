"""How a neuron's first weights are drawn: the ``init`` setting, by default chosen by the activation.

* ``xavier`` (Glorot): ``N(0, 2 / (fan_in + units))``, which keeps the variance of activations and of
  gradients about the same through layers of tanh, sigmoid, softmax or linear units;
* ``he``: ``N(0, 2 / fan_in)``, the same for relu units, which zero half of their inputs;
* ``normal``: ``N(0, 1 / fan_in)`` (LeCun's), NeuroX's only rule before ``init`` existed.

``units`` is the neuron's own width (its block of the layer), as the neuron knows nothing wider.
The choice and its measurements on deep stacks are in docs/neuron.md ("Initialisation and depth").
"""
from __future__ import annotations

import numpy as np

INITS = ("xavier", "he", "normal")


def default_init(activation: str) -> str:
    """``he`` for relu, ``xavier`` for every other activation."""
    return "he" if activation == "relu" else "xavier"


def init_of(settings: dict) -> str:
    """A neuron's rule: its ``init`` setting, else the default of its activation."""
    return settings.get("init") or default_init(settings.get("activation", "tanh"))


def check_init(name) -> str:
    if name not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {name!r}")
    return name


def init_std(init: str, fan_in: int, units: int) -> float:
    """The standard deviation of the first weights under rule ``init``."""
    fan_in = max(fan_in, 1)
    if init == "xavier":
        return float(np.sqrt(2.0 / (fan_in + units)))
    if init == "he":
        return float(np.sqrt(2.0 / fan_in))
    return float(1.0 / np.sqrt(fan_in))
