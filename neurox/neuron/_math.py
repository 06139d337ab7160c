"""What a neuron computes: activations, its forward pass, its share of backpropagation, seeding.

A neuron hosts ``units`` artificial units over the concatenation ``x`` of its inputs (rows are
samples): ``y = act(x @ W + b)``. Learning keeps ``x`` and ``y`` of a sample until the gradient of
the loss with respect to ``y`` comes back from downstream; then it updates ``W`` and ``b`` and sends
upstream the gradient with respect to ``x``, computed with the weights *before* the update, which
is exactly what single-process backpropagation does.
"""
from __future__ import annotations

import os
from itertools import chain

import numpy as np

from ._activations import ACTIVATIONS
from ._init import init_std

KERNELS = os.environ.get("NEUROX_KERNELS", "numpy")
"""``numpy`` (default) or ``numba``: whether one-row steps use the fused compiled kernels.

The compiled kernels save about 2 us per one-row step (3.4 against 5.7 us for 48x16), but loading
numba and LLVM into the launcher triples the cost of every fork (3 -> 10 ms here) and adds about
120 MiB to the launcher: that costs more in restart latency and start-up of large networks than it
saves in arithmetic, whose time is dominated by per-message work. See docs/neuron.md.
"""
if KERNELS == "numba":
    from ._kernels import dense_backward, dense_forward
elif KERNELS != "numpy":
    raise ImportError(f"NEUROX_KERNELS must be 'numpy' or 'numba', not {KERNELS!r}")

SEED_NOISE = 0.01
"""Standard deviation of the noise added to a seeded neuron's weights so siblings do not stay identical."""


BLAS_ROWS = 4 if KERNELS == "numba" else 0
"""From this many rows on, numpy's BLAS matrix product beats the fused compiled loops."""


def forward(x: np.ndarray, weights: np.ndarray, bias: np.ndarray, activation: str) -> np.ndarray:
    """The neuron's outputs for rows of inputs ``x``."""
    if x.shape[0] < BLAS_ROWS:
        return dense_forward(x, weights, bias, ACTIVATIONS.index(activation))
    z = x @ weights + bias
    if activation == "tanh":
        return np.tanh(z, out=z)
    if activation == "relu":
        return np.maximum(z, 0, out=z)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def output_gradient(y: np.ndarray, targets, activation: str) -> tuple[np.ndarray, float]:
    """At the end of the network: dLoss/dz and the mean loss for a batch of targets.

    softmax outputs are trained with cross-entropy against class indices; any other activation with
    squared error against target vectors (both give the simple ``y - t`` form for the gradient).
    """
    rows = y.shape[0]
    if activation == "softmax":
        labels = np.asarray(targets, dtype=np.int64).reshape(rows)
        if labels.min() < 0 or labels.max() >= y.shape[1]:
            raise ValueError(f"class index out of range 0..{y.shape[1] - 1}")
        grad = y.copy()
        grad[np.arange(rows), labels] -= 1.0
        loss = float(-np.log(np.maximum(y[np.arange(rows), labels], 1e-12)).mean())
    else:
        t = np.asarray(targets, dtype=np.float32).reshape(rows, y.shape[1])
        grad = (y - t).astype(np.float32)
        loss = float(0.5 * (grad ** 2).sum(axis=1).mean())
        if activation != "linear":
            grad = grad * derivative_from_output(y, activation)
    return grad.astype(np.float32) / rows, loss


def output_gradients(y: np.ndarray, rows: list, targets: list, activation: str) -> tuple[np.ndarray, list[float]]:
    """:func:`output_gradient` of several packets at once (``y`` their rows stacked, ``rows`` each): their
    dLoss/dz stacked (each packet's divided by its own rows, as alone) and their mean losses. ValueError
    or TypeError if any packet's targets do not fit (the caller then takes them one by one, to refuse
    only those)."""
    counts = np.fromiter(rows, np.intp, len(rows))
    if activation == "softmax":
        if not all(type(t) is list and len(t) == n for t, n in zip(targets, counts.tolist())):
            raise ValueError("one class index per row of each packet")
        labels = np.fromiter(chain.from_iterable(targets), np.int64, y.shape[0])
        if labels.min() < 0 or labels.max() >= y.shape[1]:
            raise ValueError(f"class index out of range 0..{y.shape[1] - 1}")
        at = np.arange(y.shape[0])
        grad = y.copy()
        grad[at, labels] -= 1.0
        losses = -np.log(np.maximum(y[at, labels], 1e-12))
    else:
        t = np.concatenate([np.asarray(t, dtype=np.float32).reshape(n, y.shape[1]) for t, n in zip(targets, counts)])
        grad = (y - t).astype(np.float32)
        losses = 0.5 * (grad ** 2).sum(axis=1)
        if activation != "linear":
            grad = grad * derivative_from_output(y, activation)
    if y.shape[0] == len(counts):  # packets of one row each: nothing to average
        return grad.astype(np.float32), losses.tolist()
    starts = np.cumsum(counts) - counts
    grad = grad.astype(np.float32) / np.repeat(counts, counts).astype(np.float32)[:, None]
    return grad, (np.add.reduceat(losses, starts) / counts).tolist()


def derivative_from_output(y: np.ndarray, activation: str) -> np.ndarray:
    """d act / d z expressed with the output ``y`` (what the neuron kept of the forward pass)."""
    if activation == "tanh":
        return 1.0 - y * y
    if activation == "sigmoid":
        return y * (1.0 - y)
    if activation == "relu":
        return (y > 0).astype(np.float32)
    return np.ones_like(y)


def backward(x: np.ndarray, y: np.ndarray, grad_y: np.ndarray, weights: np.ndarray, bias: np.ndarray,
             activation: str, lr: float, grad_is_dz: bool = False) -> np.ndarray:
    """Update ``weights`` and ``bias`` in place from one batch; return dLoss/dx for upstream."""
    dz = grad_y if grad_is_dz else grad_y * derivative_from_output(y, activation)
    return descend(x, dz, weights, bias, lr)


def descend(x: np.ndarray, dz: np.ndarray, weights: np.ndarray, bias: np.ndarray, lr: float) -> np.ndarray:
    """dLoss/dx with the weights as they are, then ``weights -= lr x^T dz`` and ``bias -= lr sum(dz)``
    in place (``lr`` 0: the weights stay)."""
    if x.shape[0] < BLAS_ROWS:
        return dense_backward(x, np.ascontiguousarray(dz, dtype=np.float32), weights, bias, np.float32(lr))
    dx = dz @ weights.T
    if lr:
        grad_w, grad_b = batch_gradient(x, dz)
        weights -= np.float32(lr) * grad_w
        bias -= np.float32(lr) * grad_b
    return dx.astype(np.float32, copy=False)


def update_norm_sq(x: np.ndarray, dz: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
    """The squared norm of one batch's gradient, ``|x^T dz|^2 + |sum(dz)|^2`` (weights and bias), and the
    gradient itself when it was formed (else None). It is not formed when the bundle is small:
    ``<x x^T + 1, dz dz^T>``, i.e. ``(|x|^2 + 1) |dz|^2`` for one row (rows x rows products); past
    ``rows^2 > fan_in x units`` it is, which costs less, and the update takes it as it is. ``inf`` or
    ``nan`` when anything in it is not finite (or its float32 sums overflow)."""
    rows = x.shape[0]
    if rows == 1:
        return (float(np.dot(x[0], x[0])) + 1.0) * float(np.dot(dz[0], dz[0])), None
    if rows * rows > x.shape[1] * dz.shape[1]:  # a big bundle: the gradient itself is the smaller product
        grad_w, grad_b = batch_gradient(x, dz)
        return float(np.vdot(grad_w, grad_w)) + float(np.dot(grad_b, grad_b)), (grad_w, grad_b)
    return float(np.vdot(x @ x.T + np.float32(1.0), dz @ dz.T)), None


def batch_gradient(x: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One batch's gradient of the weights, ``x^T dz``, and of the bias, the column sums of ``dz`` (as a
    product with ones: numpy's sum down the rows of a narrow array costs ten times more)."""
    return x.T @ dz, column_sums(dz)


def column_sums(a: np.ndarray) -> np.ndarray:
    """The sums down each column of ``a`` (rows x columns, float32)."""
    return np.ones(a.shape[0], dtype=a.dtype) @ a


def held_outputs(y: np.ndarray, held: np.ndarray | None, context: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs with a leaky context (a prefrontal region's working memory): each row sent is
    ``(1 - context) * row + context * the row sent before it``; returns them and the last row sent."""
    mixed = np.empty_like(y)
    for i, row in enumerate(y):
        held = row if held is None else (1.0 - context) * row + context * held
        mixed[i] = held
    return mixed, held


def weight_statistics(w: np.ndarray, bins: int = 10) -> dict:
    """Mean, spread, range and histogram of the finite weights, and how many are not finite (never
    raises: ``np.histogram`` does on a non-finite value)."""
    finite = np.isfinite(w)
    values = w if finite.all() else w[finite]
    if not values.size:
        return {"mean": None, "std": None, "min": None, "max": None, "histogram": [], "edges": [],
                "non_finite": int(w.size)}
    hist, edges = np.histogram(values, bins=bins)
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "histogram": hist.tolist(), "edges": [float(e) for e in edges],
            "non_finite": int(w.size - values.size)}


def link_rms(weights: np.ndarray, layout: list[tuple[str, int]]) -> dict[str, float]:
    """The RMS of each incoming link's block of rows of a weight matrix (``layout``: (source, width) in
    row order): how much a link carries, in a neuron's metrics, where the self-reshaper reads it to prune."""
    result, row = {}, 0
    for src, width in layout:
        block = weights[row:row + width]
        result[src] = float(np.sqrt(np.mean(block ** 2))) if block.size else 0.0
        row += width
    return result


def initial_weights(fan_in: int, units: int, rng: np.random.Generator, init: str = "xavier"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fresh weights drawn by rule ``init`` (``_init``: xavier, he or normal), and zero bias."""
    weights = rng.normal(0.0, init_std(init, fan_in, units), (fan_in, units)).astype(np.float32)
    return weights, np.zeros(units, dtype=np.float32)


def seed_from_siblings(siblings: list[tuple[np.ndarray, np.ndarray]], fan_in: int, units: int,
                       rng: np.random.Generator, noise: float = SEED_NOISE, init: str = "xavier"
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """A newcomer's weights from its same-layer siblings: their mean plus a little noise.

    Siblings whose shapes differ from the newcomer's are ignored. Returns the weights, the bias and
    how many siblings contributed; with none, falls back to :func:`initial_weights` (count 0).
    """
    usable = [(w, b) for w, b in siblings if w.shape == (fan_in, units) and b.shape == (units,)]
    if not usable:
        weights, bias = initial_weights(fan_in, units, rng, init)
        return weights, bias, 0
    weights = np.mean([w for w, _ in usable], axis=0) + rng.normal(0.0, noise, (fan_in, units))
    bias = np.mean([b for _, b in usable], axis=0) + rng.normal(0.0, noise, units)
    return weights.astype(np.float32), bias.astype(np.float32), len(usable)


def before_fork() -> None:
    """Called once in the launcher (on ``_process``, a preloaded module): what numpy sets up lazily the first
    time -- the random generators (about 25 ms), a generator seeded from a sequence as a neuron's first weights
    are, the histogram of its first report (together some 240 page faults) -- is then shared by every forked
    neuron instead of paid by each."""
    np.random.default_rng([1, 2]).normal(size=4)
    np.histogram(np.zeros(4, dtype=np.float32), bins=10)
