"""Local learning rules, as alternatives to backpropagation per layer: pure update functions.

- ``oja``: Hebbian learning kept stable by Oja's decay term. For a layer of several units it is
  Sanger's generalised Hebbian algorithm, ``dW = lr (x^T z - W triu(z^T z)) / rows`` with the linear
  response ``z = x W``: unit 1 follows Oja's rule exactly and converges to the first principal
  component of its (zero-mean) input, unit k to the k-th. The activation only shapes what is sent on.
- ``three_factor``: reward-modulated Hebbian learning. While learning, a unit's output deviates from
  its mean response by exploration (a softmax layer *samples* one action and sends it one-hot -- the
  thalamic gate letting one action through; other activations add Gaussian noise). The product of
  input and deviation, ``x^T (y - y_mean)``, is the *eligibility*, kept in a trace that decays with
  ``ELIGIBILITY_TAU_S``. When dopamine brings a reward prediction error ``delta``, the weights move by
  ``lr * delta * trace`` and the trace is consumed (each tag is credited by the first RPE after it,
  as in synaptic tagging and capture). With a softmax this is the policy gradient (REINFORCE with
  the expected reward as baseline); with noise it is node perturbation. Each dopamine event also
  shrinks the synapses whose input was active by ``lr * SYNAPTIC_DECAY`` (bounded synapses):
  otherwise a choice that has saturated can never be unlearned when the world changes -- its tag
  ``1 - p`` is zero and its RPE is zero once the expectation has followed its new, lower reward.
  Synapses learn, biases do not (a bias would be shared by every context), and a silent input's
  synapses keep what they hold (docs/brain.md, "Plasticity"). Without dopamine nothing is learned.

Both rules are local: such a layer sends no gradients upstream, so only local layers may feed it
(checked by the topology).
"""
from __future__ import annotations

import math

import numpy as np

PLASTICITY = ("backprop", "oja", "three_factor")
LOCAL_RULES = ("oja", "three_factor")
DEFAULT_PLASTICITY = "backprop"
ELIGIBILITY_TAU_S = 1.0
"""How long an eligibility tag waits for dopamine (it decays as exp(-t / tau))."""
SYNAPTIC_DECAY = 0.003
"""Per dopamine event, three-factor weights shrink by ``lr * SYNAPTIC_DECAY``."""
EXPLORATION_NOISE = 0.1
"""Standard deviation of the perturbation of a non-softmax three-factor unit while learning."""


def oja_update(x: np.ndarray, weights: np.ndarray, lr: float) -> None:
    """Sanger's rule (Oja's for one unit) over rows ``x``, in place on ``weights`` (fan_in x units)."""
    weights += np.float32(lr) * oja_delta(x, weights)


def oja_delta(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The direction Sanger's rule moves ``weights`` in for rows ``x`` (per unit of learning rate)."""
    z = x @ weights
    return (x.T @ z - weights @ np.triu(z.T @ z)) / np.float32(max(x.shape[0], 1))


def tempered(y: np.ndarray, activation: str, temperature: float) -> np.ndarray:
    """The mean response at an exploration temperature: a softmax's ``pi^(1/T)``, renormalised
    (flatter when T > 1); other activations are unchanged (their temperature scales the noise)."""
    if activation != "softmax" or temperature == 1.0:
        return y
    logits = np.log(np.maximum(y, 1e-30)) / temperature
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def explore(y_mean: np.ndarray, activation: str, rng: np.random.Generator, temperature: float = 1.0,
            noise: float = EXPLORATION_NOISE) -> np.ndarray:
    """What a three-factor layer sends while learning: one action sampled from the softmax ``y_mean``
    (one-hot), or the response plus noise of standard deviation ``noise * temperature``."""
    if activation == "softmax":
        cumulative = np.cumsum(y_mean, axis=1)
        draws = rng.random((y_mean.shape[0], 1)) * cumulative[:, -1:]
        chosen = np.minimum((cumulative < draws).sum(axis=1), y_mean.shape[1] - 1)
        y = np.zeros_like(y_mean)
        y[np.arange(y_mean.shape[0]), chosen] = 1.0
        return y
    return (y_mean + rng.normal(0.0, noise * temperature, y_mean.shape)).astype(np.float32)


def eligibility(x: np.ndarray, y: np.ndarray, y_mean: np.ndarray) -> np.ndarray:
    """The tags of one batch: input times the output's deviation from the mean response."""
    return x.T @ (y - y_mean).astype(np.float32)


class EligibilityTrace:
    """A neuron's decaying tags for its synapses; ``now`` is a monotonic time in seconds."""

    def __init__(self, fan_in: int, units: int, tau_s: float = ELIGIBILITY_TAU_S):
        self.weights = np.zeros((fan_in, units), dtype=np.float32)
        self.tau_s = tau_s
        self.at = 0.0

    def _decay_to(self, now: float) -> None:
        self.weights *= np.float32(math.exp(-max(0.0, now - self.at) / self.tau_s))
        self.at = now

    def add(self, tags: np.ndarray, now: float) -> None:
        self._decay_to(now)
        self.weights += tags

    def take(self, now: float) -> np.ndarray:
        """The decayed tags, consumed: the trace is empty afterwards."""
        self._decay_to(now)
        taken = self.weights.copy()
        self.weights.fill(0.0)
        return taken


def three_factor_update(weights: np.ndarray, tags: np.ndarray, rpe: float, lr: float,
                        decay: float = SYNAPTIC_DECAY) -> None:
    """In place: ``W = (1 - lr decay) W + lr delta tags`` (ascending the expected reward, bounded), the
    decay only on the synapses whose input was active while tagged."""
    active = np.any(tags != 0, axis=1)
    weights[active] *= np.float32(1.0 - lr * decay)
    weights += np.float32(lr * rpe) * tags
