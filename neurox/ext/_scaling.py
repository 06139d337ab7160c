"""Input scaling that belongs to the network: online statistics of what it learns from.

A network's inputs (and a regression network's targets) are scaled where every origin passes --
MessengerIn -- by a :class:`Scaler` whose statistics grow with the stream (no look at its future):

- ``standard`` (the default): each column minus its running mean, over its running standard deviation
  (Welford's algorithm, in float64), so tanh neurons see centred inputs of unit spread whatever the
  user's units; a column seen constant so far becomes 0;
- ``minmax``: each column to [0, 1] over its running minimum and maximum;
- ``none``: values as they come;
- ``frozen``: ``standard`` for the first ``frozen_after`` samples, then those statistics for good.

Statistics grow only from samples the network learns from (an ``ask`` does not move them); until the
first of those, values pass as they come. The state is a plain map (:meth:`Scaler.to_state`) that MessengerIn keeps in its LevelDB. All pure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..neuron import TopologyError

MODES = ("standard", "minmax", "none", "frozen")
DEFAULT_MODE = "standard"
DEFAULT_FROZEN_AFTER = 1000
INPUT_KEYS = ("scale", "frozen_after")
_F4 = np.dtype(np.float32)


class ScalingError(TopologyError):
    """A scaling setting that cannot be used; the message says what is accepted."""


@dataclass(frozen=True)
class ScaleConfig:
    mode: str = DEFAULT_MODE
    frozen_after: int = DEFAULT_FROZEN_AFTER

    def describe(self) -> str:
        return f"frozen after {self.frozen_after:,} samples" if self.mode == "frozen" else self.mode


def scale_config(table: dict | None) -> ScaleConfig:
    """The topology's ``[input]`` table (``scale``, ``frozen_after``) checked; ScalingError if wrong."""
    table = dict(table or {})
    unknown = sorted(set(table) - set(INPUT_KEYS))
    if unknown:
        raise ScalingError(f"[input]: unknown keys {unknown}; known: {list(INPUT_KEYS)}")
    mode = table.get("scale", DEFAULT_MODE)
    if mode not in MODES:
        raise ScalingError(f"[input] scale: one of {', '.join(MODES)}; got {mode!r}")
    after = table.get("frozen_after", DEFAULT_FROZEN_AFTER)
    if not isinstance(after, int) or isinstance(after, bool) or after < 1:
        raise ScalingError(f"[input] frozen_after: a whole number of samples >= 1; got {after!r}")
    return ScaleConfig(mode, after)


class Scaler:
    """Running statistics of ``width`` columns and the transform they give (see the module's doc)."""

    def __init__(self, width: int, config: ScaleConfig = ScaleConfig()):
        self.width, self.config = width, config
        self.count = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)
        self._factors: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def frozen(self) -> bool:
        return self.config.mode == "frozen" and self.count >= self.config.frozen_after

    def learn(self, rows: np.ndarray) -> None:
        """Take rows (n x width, finite) into the statistics, unless frozen or ``none``."""
        if self.config.mode == "none":
            return
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.width)
        if self.config.mode == "frozen":
            rows = rows[:max(0, self.config.frozen_after - self.count)]
        if not len(rows):
            return
        self._factors = None
        if len(rows) == 1:  # Welford's own update (the common case: one sample a packet), in place
            row = rows[0]
            self.count += 1
            delta = row - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (row - self.mean)
            np.minimum(self.low, row, out=self.low)
            np.maximum(self.high, row, out=self.high)
            return
        # Chan et al.'s parallel update: Welford's for a block of rows at once.
        n = len(rows)
        block_mean = rows.mean(axis=0)
        block_m2 = ((rows - block_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = block_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + block_m2 + delta ** 2 * (self.count * n / total)
        self.count = total
        self.low = np.minimum(self.low, rows.min(axis=0))
        self.high = np.maximum(self.high, rows.max(axis=0))

    def scan(self, rows: np.ndarray, learns: np.ndarray) -> np.ndarray:
        """Rows (n x width) in the network's units, each as :meth:`learn` (where ``learns``) then
        :meth:`transform` one row after another would give it, in a few array operations for all (a
        bundle at MessengerIn): the running statistics of every prefix come from cumulative sums."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.width)
        take = np.asarray(learns, dtype=bool).reshape(-1)
        if self.config.mode == "frozen":
            take = take & (np.cumsum(take) <= max(0, self.config.frozen_after - self.count))
        if self.config.mode == "none" or not take.any():
            return self.transform(rows)
        counts = (self.count + np.cumsum(take))[:, None]
        every = bool(take.all())  # the common case: every row learnt from, no masks needed
        taken = None if every else take[:, None]
        learnt = rows if every else rows[take]
        if self.config.mode == "minmax":  # each prefix's extremes; the mean and m2 of the whole only
            low = np.minimum(self.low, np.minimum.accumulate(rows if every else np.where(taken, rows, np.inf), axis=0))
            high = np.maximum(self.high, np.maximum.accumulate(rows if every else np.where(taken, rows, -np.inf), axis=0))
            offset, spread = low, high - low
            self._learn_moments(learnt)
            self.low, self.high = low[-1].copy(), high[-1].copy()
        else:  # each prefix's mean and squared deviations (Chan et al.); the extremes of the whole only
            # (in place where it can be, and one division of the whole block: a bundle is hundreds of rows)
            shifted = rows - self.mean if every else np.where(taken, rows - self.mean, 0.0)
            s1 = np.cumsum(shifted, axis=0)
            spread = np.cumsum(np.square(shifted, out=shifted), axis=0)
            per = 1.0 / np.maximum(counts, 1)
            offset = s1 * per
            spread -= np.multiply(s1, offset, out=s1)  # s2 - s1 * offset + m2: each prefix's squared deviations
            spread += self.m2
            self.m2 = np.maximum(spread[-1], 0.0)
            np.maximum(spread, 0.0, out=spread)
            spread *= per
            np.sqrt(spread, out=spread)
            offset += self.mean
            self.mean = offset[-1].copy()
            self.low, self.high = np.minimum(self.low, learnt.min(axis=0)), np.maximum(self.high, learnt.max(axis=0))
        if self.count == 0 and not take[0]:  # before the first learnt sample values pass as they come
            seen = counts > 0
            offset, spread = np.where(seen, offset, 0.0), np.where(seen, spread, 1.0)
        spread[spread == 0.0] = np.inf  # its inverse 0: a column without spread stays 0 (a masked divide cost 40 %)
        inverse = np.reciprocal(spread, out=spread)
        out = np.subtract(rows, offset, out=offset)
        out *= inverse
        self.count = int(counts[-1, 0])
        self._factors = None
        return out.astype(np.float32)

    def _learn_moments(self, rows: np.ndarray) -> None:
        """The mean and m2 of rows taken in at once (Chan et al.), leaving the count and extremes alone."""
        n, total = len(rows), self.count + len(rows)
        block_mean = rows.mean(axis=0)
        delta = block_mean - self.mean
        self.m2 = self.m2 + ((rows - block_mean) ** 2).sum(axis=0) + delta ** 2 * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)

    def std(self) -> np.ndarray:
        """The running (population) standard deviation; 0 for a column seen constant or not seen."""
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros(self.width)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the network's units (float32)."""
        if type(rows) is not np.ndarray or rows.dtype != _F4:  # float32 rows go to float64 in the subtraction
            rows = np.asarray(rows, dtype=np.float64)
        rows = rows.reshape(-1, self.width)
        if self.config.mode == "none" or not self.count:
            return rows.astype(np.float32)
        if self._factors is None:  # (offset, 1/spread, 0 where a column has shown none), until it learns again
            spread = self.high - self.low if self.config.mode == "minmax" else self.std()
            offset = self.low if self.config.mode == "minmax" else self.mean
            self._factors = (offset.copy(), np.divide(1.0, spread, out=np.zeros(self.width), where=spread > 0))
        offset, inverse = self._factors
        out = np.subtract(rows, offset)
        out *= inverse
        return out.astype(np.float32)

    def unit_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset, factor) with ``user = network * factor + offset``: what turns answers back into the
        user's units (factor 1 where a column has shown no spread yet)."""
        if self.config.mode == "none" or not self.count:
            return np.zeros(self.width), np.ones(self.width)
        if self.config.mode == "minmax":
            span = self.high - self.low
            return self.low.copy(), np.where(span > 0, span, 1.0)
        std = self.std()
        return self.mean.copy(), np.where(std > 0, std, 1.0)

    def to_state(self) -> dict:
        """Everything needed to go on after a restart (msgpack-able)."""
        return {"mode": self.config.mode, "frozen_after": self.config.frozen_after, "width": self.width,
                "count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist(),
                "low": self.low.tolist(), "high": self.high.tolist()}

    def summary(self) -> dict:
        """What people look at (``neurox probe state``): the mode, how many samples, the statistics."""
        seen = bool(self.count)
        return {"mode": self.config.describe(), "count": self.count, "frozen": self.frozen,
                "mean": self.mean.round(6).tolist(), "std": self.std().round(6).tolist(),
                "min": self.low.tolist() if seen else [], "max": self.high.tolist() if seen else []}

    @classmethod
    def from_state(cls, state: dict, width: int, config: ScaleConfig) -> "Scaler":
        """A scaler that goes on from ``state``; a fresh one if the state is of another width or mode
        (the network was reshaped or its scaling changed), or is not a scaler's state at all."""
        scaler = cls(width, config)
        try:
            if state.get("width") != width or state.get("mode") != config.mode:
                return scaler
            arrays = [np.asarray(state[k], dtype=np.float64).reshape(width) for k in ("mean", "m2", "low", "high")]
            count = int(state["count"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return scaler
        if count < 0 or not all(np.all(np.isfinite(a)) for a in arrays[:2]):
            return scaler
        scaler.count = count
        scaler.mean, scaler.m2, scaler.low, scaler.high = arrays
        scaler._factors = None
        return scaler
