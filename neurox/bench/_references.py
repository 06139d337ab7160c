"""The references ``neurox bench datasets`` measures NeuroX against, prequentially, sample by sample.

Each runner takes the same features (the user's units), targets and sample order as the network and
returns a :class:`Score`: accuracy (or RMSE, in the user's units), accuracy over the last 1,000
samples, samples per second. Test-then-train: every sample is predicted before it is learnt from.

- :func:`in_process` -- the network's shape as one MLP in numpy (tanh, softmax + cross-entropy or
  linear + squared error, SGD one sample at a time at the network's learning rate), with the same
  online scaling (``neurox.ext.Scaler``), so the gap to NeuroX is the price of the processes;
- :func:`sklearn_mlp` -- scikit-learn's MLPClassifier / MLPRegressor (same hidden layers, tanh),
  ``partial_fit`` one sample at a time after a ``StandardScaler`` fitted online;
- :func:`river_model` -- River's online pipelines: ``StandardScaler | LogisticRegression`` (one against
  the rest for several classes; ``LinearRegression`` for a regression) and a Hoeffding tree.

scikit-learn and River are benchmark extras (``pip install neurox[bench]``), imported when run.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..ext import ScaleConfig, Scaler

LAST = 1000


@dataclass
class Score:
    value: float
    """Accuracy, or RMSE for a regression."""
    last_1000: float | None
    """Accuracy (or RMSE) over the last 1,000 samples."""
    samples_per_s: float


class _Books:
    """Prequential scoring of a stream of predictions."""

    def __init__(self, classification: bool):
        self.classification = classification
        self.total = 0.0
        self.count = 0
        self.recent: deque[float] = deque(maxlen=LAST)
        self.started = time.perf_counter()

    def note(self, predicted, truth) -> None:
        error = float(predicted == truth) if self.classification else float(
            np.mean((np.asarray(predicted, dtype=float) - np.asarray(truth, dtype=float)) ** 2))
        self.total += error
        self.count += 1
        self.recent.append(error)

    def score(self) -> Score:
        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        if self.classification:
            return Score(self.total / self.count, float(np.mean(self.recent)), rate)
        return Score(float(np.sqrt(self.total / self.count)), float(np.sqrt(np.mean(self.recent))), rate)


def in_process(features: np.ndarray, targets: np.ndarray, classes: int | None, hidden: list[int], lr: float,
               orders: list[np.ndarray], seed: int, scale: ScaleConfig = ScaleConfig()) -> Score:
    """The network's shape in one process; ``classes`` None for a regression (``targets`` rows x outputs)."""
    rng = np.random.default_rng(seed)
    outputs = classes or targets.reshape(len(targets), -1).shape[1]
    sizes = [features.shape[1], *hidden, outputs]
    weights = [rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]
    inputs = Scaler(features.shape[1], scale)
    values = Scaler(outputs, ScaleConfig("standard" if scale.mode == "minmax" else scale.mode, scale.frozen_after))
    books = _Books(classes is not None)
    for order in orders:
        for i in order:
            inputs.learn(features[i])
            hs = [inputs.transform(features[i])]
            for k, (w, b) in enumerate(zip(weights, biases)):
                z = hs[-1] @ w + b
                hs.append(np.tanh(z) if k < len(weights) - 1 else z)
            if classes is not None:
                p = np.exp(hs[-1] - hs[-1].max())
                p /= p.sum()
                books.note(int(p.argmax()), int(targets[i]))
                g = p
                g[0, int(targets[i])] -= 1
            else:
                offset, factor = values.unit_scale()
                books.note(hs[-1][0] * factor + offset, targets[i])
                values.learn(targets[i])
                g = hs[-1] - values.transform(targets[i])
            for k in reversed(range(len(weights))):
                grad_w, grad_b = hs[k].T @ g, g.sum(axis=0)
                if k:
                    g = (g @ weights[k].T) * (1 - hs[k] ** 2)
                weights[k] -= lr * grad_w
                biases[k] -= lr * grad_b
    return books.score()


def sklearn_mlp(features: np.ndarray, targets: np.ndarray, classes: int | None, hidden: list[int],
                orders: list[np.ndarray], seed: int) -> Score:
    """scikit-learn's MLP, ``partial_fit`` one sample at a time after an online StandardScaler."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    kind = MLPClassifier if classes is not None else MLPRegressor
    model = kind(hidden_layer_sizes=tuple(hidden), activation="tanh", random_state=seed)
    scaler = StandardScaler()
    targets_scaler = StandardScaler()
    books = _Books(classes is not None)
    fitted = False
    for order in orders:
        for i in order:
            x = features[i:i + 1].astype(np.float64)
            scaler.partial_fit(x)
            xs = scaler.transform(x)
            if classes is not None:
                books.note(int(model.predict(xs)[0]) if fitted else 0, int(targets[i]))
                model.partial_fit(xs, targets[i:i + 1], classes=np.arange(classes))
            else:
                y = targets[i:i + 1].reshape(1, -1).astype(np.float64)
                guess = targets_scaler.inverse_transform(model.predict(xs).reshape(1, -1))[0] if fitted else 0.0
                books.note(guess, y[0])
                targets_scaler.partial_fit(y)
                model.partial_fit(xs, targets_scaler.transform(y).ravel())
            fitted = True
    return books.score()


def river_model(features: np.ndarray, targets: np.ndarray, classes: int | None, orders: list[np.ndarray],
                kind: str) -> Score:
    """River: ``kind`` ``logistic`` (StandardScaler | LogisticRegression, or LinearRegression) or ``tree``."""
    from river import linear_model, multiclass, preprocessing, tree

    if kind == "tree":
        model = tree.HoeffdingTreeClassifier() if classes is not None else tree.HoeffdingTreeRegressor()
    elif classes is None:
        model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    elif classes == 2:
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    else:
        model = preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
    names = [f"x{j}" for j in range(features.shape[1])]
    rows = [dict(zip(names, row)) for row in features.astype(float).tolist()]
    truths = targets.astype(int).tolist() if classes is not None else targets.reshape(len(targets)).astype(float).tolist()
    books = _Books(classes is not None)
    for order in orders:
        for i in order:
            guess = model.predict_one(rows[i])
            books.note((0 if guess is None else int(guess)) if classes is not None else float(guess or 0.0), truths[i])
            model.learn_one(rows[i], truths[i])
    return books.score()
