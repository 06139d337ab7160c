"""A neuron's state in its own LevelDB: weights, bias, settings and counters, written behind.

Writes are write-behind: the neuron marks its state dirty as it learns, and :meth:`NeuronStore.flush`
writes everything in one atomic ``WriteBatch`` at the flush interval, so a crash leaves either the
previous flush or this one, never a mix. A polite stop flushes with ``sync=True`` and sets the
``clean`` key; its absence on the next open tells that the last run did not stop politely.

Keys: ``weights`` and ``bias`` (msgpack ``{"shape": [...], "data": <float32 bytes>}``),
``settings`` and ``counters`` (msgpack maps), ``flushes`` (msgpack int), ``clean`` (``b"1"``).
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import numpy as np
import plyvel

from ..runtime import pack, unpack

WRITE_BUFFER_BYTES = 256 * 1024
"""LevelDB's memtable per neuron: a neuron's whole state is a few KiB, so keep it small."""
BLOCK_CACHE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SavedState:
    weights: np.ndarray
    bias: np.ndarray
    settings: dict
    counters: dict
    flushes: int


def _array_value(array: np.ndarray) -> bytes:
    return pack({"shape": list(array.shape), "data": np.ascontiguousarray(array, "<f4").tobytes()})


def _array_from(value: bytes) -> np.ndarray:
    data = unpack(value)
    return np.frombuffer(data["data"], dtype="<f4").reshape(data["shape"]).copy()


class NeuronStore:
    """One neuron's LevelDB. ``was_clean`` tells whether the previous run stopped politely."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.db = plyvel.DB(path, create_if_missing=True, write_buffer_size=WRITE_BUFFER_BYTES,
                            lru_cache_size=BLOCK_CACHE_BYTES)
        self.was_clean = self.db.get(b"clean") == b"1"
        self.db.delete(b"clean", sync=True)
        self.flushes = unpack(self.db.get(b"flushes", pack(0)))
        self.last_flush_t: float | None = None
        self.last_flush_ms: float | None = None

    @staticmethod
    def discard(path: str) -> None:
        """Remove a dead neuron's database (policy ``replace``)."""
        shutil.rmtree(path, ignore_errors=True)

    def load(self) -> SavedState | None:
        """What the last flush wrote, or None for an empty database."""
        weights, bias = self.db.get(b"weights"), self.db.get(b"bias")
        if weights is None or bias is None:
            return None
        return SavedState(_array_from(weights), _array_from(bias),
                          unpack(self.db.get(b"settings", pack({}))),
                          unpack(self.db.get(b"counters", pack({}))), self.flushes)

    def flush(self, weights: np.ndarray, bias: np.ndarray, settings: dict, counters: dict,
              sync: bool = False) -> None:
        """Write the whole state in one atomic batch. Raises plyvel.IOError (e.g. disk full)."""
        started = time.perf_counter()
        with self.db.write_batch(transaction=True, sync=sync) as batch:
            batch.put(b"weights", _array_value(weights))
            batch.put(b"bias", _array_value(bias))
            batch.put(b"settings", pack(settings))
            batch.put(b"counters", pack(counters))
            batch.put(b"flushes", pack(self.flushes + 1))
        self.flushes += 1
        self.last_flush_t = time.time()
        self.last_flush_ms = (time.perf_counter() - started) * 1000.0

    def close(self, clean: bool) -> None:
        if clean:
            self.db.put(b"clean", b"1", sync=True)
        self.db.close()
