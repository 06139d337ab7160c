"""Datasets to learn from: the bundled 8x8 digits, or any CSV / NPZ file with a target column.

Features are scaled to [0, 1] per column (constant columns become 0), which suits tanh neurons.
A target whose values are all integers (or any text) is a class label; otherwise it is regressed.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

DIGITS = os.path.join(os.path.dirname(__file__), "data", "digits.npz")
"""The 1,797 8x8 handwritten digits of the UCI set (as shipped by scikit-learn, BSD licence)."""


class DatasetError(ValueError):
    """A data file that cannot be used, with the reason."""


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray
    targets: np.ndarray
    classes: list[str] | None
    """Class names for a classification set (targets are indices into it); None for regression."""

    @property
    def width(self) -> int:
        return self.features.shape[1]

    @property
    def outputs(self) -> int:
        return len(self.classes) if self.classes is not None else (self.targets.shape[1] if self.targets.ndim > 1 else 1)


def digits() -> Dataset:
    data = np.load(DIGITS)
    return Dataset(data["X"].astype(np.float32) / 16.0, data["y"].astype(np.int64), [str(d) for d in range(10)])


def load_dataset(path: str | None, target: str | None = None) -> Dataset:
    """Read ``path`` (``.csv`` or ``.npz``); None gives the bundled digits."""
    if path is None:
        return digits()
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file")
    if path.endswith(".npz"):
        return _from_npz(path, target)
    if path.endswith(".csv"):
        return _from_csv(path, target)
    raise DatasetError(f"{path}: expected a .csv or .npz file")


def _from_npz(path: str, target: str | None) -> Dataset:
    data = np.load(path, allow_pickle=False)
    feature_key = "X" if "X" in data else None
    target_key = target or ("y" if "y" in data else None)
    if feature_key is None or target_key not in data:
        raise DatasetError(f"{path}: an NPZ needs arrays 'X' and '{target_key or 'y'}' (has {sorted(data.files)})")
    features = np.asarray(data[feature_key], dtype=np.float64).reshape(len(data[feature_key]), -1)
    return _finish(features, np.asarray(data[target_key]), path)


def _from_csv(path: str, target: str | None) -> Dataset:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise DatasetError(f"{path}: no data rows")
    header = rows[0]
    has_header = not all(_is_number(c) for c in header)
    body = rows[1:] if has_header else rows
    names = header if has_header else [str(i) for i in range(len(header))]
    column = names.index(target) if target in names else (int(target) if target and target.lstrip("-").isdigit() else None)
    if column is None:
        if target is not None:
            raise DatasetError(f"{path}: no target column {target!r}; columns are {names}")
        column = len(names) - 1
    width = len(names)
    bad = [i + 1 for i, r in enumerate(body) if len(r) != width]
    if bad:
        raise DatasetError(f"{path}: rows {bad[:5]} do not have {width} columns")
    try:
        features = np.array([[float(v) for j, v in enumerate(r) if j != column % width] for r in body])
    except ValueError as exc:
        raise DatasetError(f"{path}: a feature is not a number ({exc})") from None
    raw = [r[column] for r in body]
    numeric = all(_is_number(v) for v in raw)
    return _finish(features, np.array([float(v) for v in raw] if numeric else raw), path)


def _finish(features: np.ndarray, targets: np.ndarray, path: str) -> Dataset:
    if len(features) != len(targets) or len(features) == 0:
        raise DatasetError(f"{path}: {len(features)} feature rows for {len(targets)} targets")
    low, high = features.min(axis=0), features.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = ((features - low) / span).astype(np.float32)
    if targets.dtype.kind in "USO" or all(_is_integer(v) for v in targets.ravel()[:1000]):
        values = [str(v) if targets.dtype.kind in "USO" else str(int(float(v))) for v in targets]
        try:
            classes = sorted(set(values), key=float)
        except ValueError:
            classes = sorted(set(values))
        index = {c: i for i, c in enumerate(classes)}
        return Dataset(scaled, np.array([index[v] for v in values], dtype=np.int64), classes)
    return Dataset(scaled, targets.astype(np.float32).reshape(len(targets), -1), None)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _is_integer(value) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False
