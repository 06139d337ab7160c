"""Widening a layer's neurons live, decided purely: each neuron's weights with units added, and its
successors' weights with rows for them, so that the network computes the same function as before.

A neuron of ``u`` units widened to ``u'`` keeps its ``u`` columns (weights and bias) and gains
``u' - u`` columns drawn as a first start draws them (its ``init`` rule); every neuron it feeds keeps
its rows for the old units and gains *zero* rows for the new ones. The new units compute something
from the start, but nothing downstream listens to them yet, so every answer stays what it was; the
first update gives the zero rows a gradient (the new units' outputs times the error), and through
them the new columns get theirs -- the units are learnt from where the network stands, as a grown
neuron is (Net2Net's function-preserving widening, Chen, Goodfellow & Shlens 2016, with a random
new half instead of a copy: a copied unit gets the same gradient as its original and stays its twin).
"""
from __future__ import annotations

import numpy as np

from ._init import init_std


def widened_columns(weights: np.ndarray, bias: np.ndarray, units: int, init: str,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A neuron's ``(fan_in, u)`` weights and ``(u,)`` bias with ``units - u`` columns added, drawn by
    ``init`` for a neuron of ``units`` units; ValueError if ``units`` is not more than ``u``."""
    fan_in, old = weights.shape
    if units <= old:
        raise ValueError(f"a neuron of {old} units can only be widened, not to {units}")
    new = rng.normal(0.0, init_std(init, fan_in, units), (fan_in, units - old))
    return (np.concatenate([weights, new], axis=1).astype(np.float32),
            np.concatenate([bias, np.zeros(units - old)]).astype(np.float32))


def widened_rows(weights: np.ndarray, layout: list[tuple[str, int]], peer: str, old_rows: np.ndarray) -> np.ndarray:
    """A successor's weights, laid out by ``layout`` (its inputs' ``(peer, width)`` in order, ``peer``'s
    width already the new one), with ``peer``'s block set to ``old_rows`` (its rows before the
    widening) followed by zero rows for the new units; ValueError if the block does not fit."""
    at = 0
    for source, width in layout:
        if source == peer:
            if old_rows.shape[0] > width or old_rows.shape[1:] != weights.shape[1:]:
                raise ValueError(f"{peer}'s old rows {old_rows.shape} do not fit its {width} rows")
            widened = weights.astype(np.float32)  # a copy
            widened[at:at + width] = 0.0
            widened[at:at + old_rows.shape[0]] = old_rows
            return widened
        at += int(width)
    raise ValueError(f"{peer} is not an input of this layout")


def rows_of(weights: np.ndarray, layout: list[tuple[str, int]], peer: str) -> np.ndarray:
    """``peer``'s block of rows in weights laid out by ``layout``; ValueError if it is not an input."""
    at = 0
    for source, width in layout:
        if source == peer:
            return weights[at:at + int(width)].copy()
        at += int(width)
    raise ValueError(f"{peer} is not an input of this layout")
