"""The hot path of a neuron, compiled with numba: one fused forward and one fused backward step.

For the small matrices a neuron holds (tens of inputs, 16 units) numpy spends more time in call
overhead than in arithmetic; fused loops avoid the temporaries (``neurox bench kernels`` measures
both). Signatures are given, so compilation happens at import, and ``cache=True`` stores the
machine code beside the module: the launcher imports this once, and every forked neuron, first
start or replacement, gets the compiled code for free.
"""
from __future__ import annotations

import numpy as np
from numba import njit

ACT_TANH, ACT_RELU, ACT_SIGMOID, ACT_LINEAR, ACT_SOFTMAX = range(5)


@njit("f4[:, :](f4[:, :], f4[:, :], f4[:], i8)", cache=True, fastmath=False)
def dense_forward(x, weights, bias, activation):
    rows, fan_in = x.shape
    units = weights.shape[1]
    y = np.empty((rows, units), dtype=np.float32)
    for r in range(rows):
        for u in range(units):
            acc = bias[u]
            for i in range(fan_in):
                acc += x[r, i] * weights[i, u]
            y[r, u] = acc
        if activation == ACT_TANH:
            for u in range(units):
                y[r, u] = np.tanh(y[r, u])
        elif activation == ACT_RELU:
            for u in range(units):
                if y[r, u] < 0:
                    y[r, u] = 0.0
        elif activation == ACT_SIGMOID:
            for u in range(units):
                y[r, u] = 1.0 / (1.0 + np.exp(-y[r, u]))
        elif activation == ACT_SOFTMAX:
            top = y[r, 0]
            for u in range(units):
                top = max(top, y[r, u])
            total = 0.0
            for u in range(units):
                y[r, u] = np.exp(y[r, u] - top)
                total += y[r, u]
            for u in range(units):
                y[r, u] /= total
    return y


@njit("f4[:, :](f4[:, :], f4[:, :], f4[:, :], f4[:], f4)", cache=True, fastmath=False)
def dense_backward(x, dz, weights, bias, lr):
    """dLoss/dx with the current weights, then ``weights -= lr * x.T @ dz`` and ``bias -= lr * sum(dz)``."""
    rows, fan_in = x.shape
    units = weights.shape[1]
    dx = np.zeros((rows, fan_in), dtype=np.float32)
    for r in range(rows):
        for i in range(fan_in):
            acc = np.float32(0.0)
            for u in range(units):
                acc += dz[r, u] * weights[i, u]
            dx[r, i] = acc
    for i in range(fan_in):
        for u in range(units):
            g = np.float32(0.0)
            for r in range(rows):
                g += x[r, i] * dz[r, u]
            weights[i, u] -= lr * g
    for u in range(units):
        g = np.float32(0.0)
        for r in range(rows):
            g += dz[r, u]
        bias[u] -= lr * g
    return dx
