"""Durations kept as histograms over fixed log-spaced buckets: cheap to fill, to send and to merge.

The buckets are the same everywhere (:data:`BOUNDS`: 10 us to 10 s, four a decade, and one above), so
histograms of different processes add up bucket by bucket, and Prometheus's ``histogram_quantile``
works on them as sent. Filling one is a ``bisect`` and two additions: a neuron does it once a bundle.
"""
from __future__ import annotations

from bisect import bisect_left

BOUNDS = tuple(round(10.0 ** (k / 4.0 - 5.0), 9) for k in range(25))
"""Upper bounds of the buckets in seconds, 1e-5 .. 10 (a last bucket, ``+Inf``, holds the rest)."""


class Histogram:
    """Counts of durations per bucket of :data:`BOUNDS`, their sum and their number."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self):
        self.counts = [0] * (len(BOUNDS) + 1)
        self.sum, self.count = 0.0, 0

    def observe(self, seconds: float, times: int = 1) -> None:
        """``times`` durations of ``seconds`` each (a bundle's packets share their arrival and their send)."""
        self.counts[bisect_left(BOUNDS, seconds)] += times
        self.sum += seconds * times
        self.count += times

    def to_dict(self) -> dict:
        """The wire form (msgpack, JSON): buckets, sum, count, and the quantiles a person reads."""
        return {"bounds": list(BOUNDS), "counts": list(self.counts), "sum": self.sum, "count": self.count,
                **summary(self.counts, self.sum, self.count)}


def quantile(counts: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (None: empty; the last bound if above it)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for bound, n in zip((*BOUNDS, BOUNDS[-1]), counts):
        seen += n
        if seen >= rank:
            return bound
    return BOUNDS[-1]


def summary(counts: list[int], total_s: float, count: int) -> dict:
    """``mean_s``, ``p50_s``, ``p90_s``, ``p99_s`` (None when nothing was observed)."""
    return {"mean_s": total_s / count if count else None, "p50_s": quantile(counts, 0.5),
            "p90_s": quantile(counts, 0.9), "p99_s": quantile(counts, 0.99)}


def merge(histograms: list[dict]) -> dict:
    """Wire-form histograms added up (those with other bounds, or not histograms, are left out)."""
    counts, total, count = [0] * (len(BOUNDS) + 1), 0.0, 0
    for h in histograms:
        if not isinstance(h, dict) or h.get("bounds") != list(BOUNDS) or len(h.get("counts", ())) != len(counts):
            continue
        counts = [a + b for a, b in zip(counts, h["counts"])]
        total, count = total + float(h.get("sum", 0.0)), count + int(h.get("count", 0))
    return {"bounds": list(BOUNDS), "counts": counts, "sum": total, "count": count, **summary(counts, total, count)}
