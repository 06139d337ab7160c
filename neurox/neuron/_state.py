"""A neuron's state in its own LevelDB: weights, bias, settings and counters, written behind.

Writes are write-behind: the neuron marks its state dirty as it learns, and :meth:`NeuronStore.flush`
writes everything in one atomic ``WriteBatch`` at the flush interval, so a crash leaves either the
previous flush or this one, never a mix. A polite stop flushes with ``sync=True`` and sets the
``clean`` key; its absence on the next open tells that the last run did not stop politely.

Keys: ``weights`` and ``bias`` (msgpack ``{"shape": [...], "data": <float32 bytes>}``),
``settings`` and ``counters`` (msgpack maps), ``flushes`` (msgpack int), ``checksum`` (CRC-32 of the
weights and bias bytes, checked on load: a torn state would be refused, never used), ``clean`` (``b"1"``).
"""
from __future__ import annotations

import os
import shutil
import time
import zlib
from dataclasses import dataclass

import numpy as np
import plyvel

from ..runtime import pack, unpack
from ._frames import array_from_wire, array_to_wire

WRITE_BUFFER_BYTES = 256 * 1024
"""LevelDB's memtable per neuron: a neuron's whole state is a few KiB, so keep it small."""
BLOCK_CACHE_BYTES = 64 * 1024
LOCK_WAIT_S = 2.0
"""A replacement can start while its predecessor -- SIGKILLed together with its supervisor -- is
still being torn down and holds the database's lock; it waits this long for the lock."""


@dataclass(frozen=True)
class SavedState:
    weights: np.ndarray
    bias: np.ndarray
    settings: dict
    counters: dict
    flushes: int


def _array_value(array: np.ndarray) -> bytes:
    return pack(array_to_wire(array))


def _array_from(value: bytes) -> np.ndarray:
    return array_from_wire(unpack(value))


class TornState(RuntimeError):
    """The weights and bias on disk do not match their checksum."""


def params_checksum(weights: np.ndarray, bias: np.ndarray) -> int:
    """CRC-32 of the weights' and bias' float32 bytes: what a flush writes and a load checks."""
    crc = zlib.crc32(np.ascontiguousarray(weights, "<f4").tobytes())
    return zlib.crc32(np.ascontiguousarray(bias, "<f4").tobytes(), crc)


class NeuronStore:
    """One neuron's LevelDB. ``was_clean`` tells whether the previous run stopped politely."""

    def __init__(self, path: str):
        self.path = path
        self.failed = False
        self.was_clean = False
        self.flushes = 0
        self.last_flush_t: float | None = None
        self.last_flush_ms: float | None = None
        self.db: plyvel.DB | None = None
        if os.path.exists(path):  # a new database is created by the first flush, off the start path
            self.db = self._open()
            self.was_clean = self.db.get(b"clean") == b"1"
            self.flushes = unpack(self.db.get(b"flushes", pack(0)))
            if self.was_clean:
                try:
                    self.db.delete(b"clean", sync=True)
                except plyvel.Error:  # a full disk: run from memory; the next flush retries (and reopens)
                    self.failed = True

    @property
    def closed(self) -> bool:
        return self.db is None or self.db.closed

    def _open(self) -> plyvel.DB:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                return plyvel.DB(self.path, create_if_missing=True, write_buffer_size=WRITE_BUFFER_BYTES,
                                 lru_cache_size=BLOCK_CACHE_BYTES)
            except plyvel.IOError as exc:
                if "lock" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    def discard(path: str) -> None:
        """Remove a dead neuron's database (policy ``replace``)."""
        shutil.rmtree(path, ignore_errors=True)

    def load(self) -> SavedState | None:
        """What the last flush wrote, or None for an empty (or not yet created) database."""
        if self.db is None:
            return None
        weights, bias = self.db.get(b"weights"), self.db.get(b"bias")
        if weights is None or bias is None:
            return None
        weights, bias = _array_from(weights), _array_from(bias)
        stored = self.db.get(b"checksum")
        if stored is not None and unpack(stored) != params_checksum(weights, bias):
            raise TornState(f"{self.path}: weights and bias do not match their checksum")
        return SavedState(weights, bias,
                          unpack(self.db.get(b"settings", pack({}))),
                          unpack(self.db.get(b"counters", pack({}))), self.flushes)

    def flush(self, weights: np.ndarray, bias: np.ndarray, settings: dict, counters: dict,
              sync: bool = False) -> None:
        """Write the whole state in one atomic batch. Raises plyvel.Error (e.g. disk full).

        After a failed write the database is reopened before the next one: LevelDB may keep a
        write error sticky, and reopening replays its log up to the last whole batch.
        """
        started = time.perf_counter()
        if self.failed or self.db is None:
            if self.db is not None:
                self.db.close()
            self.db = self._open()
            self.failed = False
        try:
            self._write(weights, bias, settings, counters, sync)
        except plyvel.Error:
            self.failed = True
            raise
        self.flushes += 1
        self.last_flush_t = time.time()
        self.last_flush_ms = (time.perf_counter() - started) * 1000.0

    def _write(self, weights: np.ndarray, bias: np.ndarray, settings: dict, counters: dict, sync: bool) -> None:
        with self.db.write_batch(transaction=True, sync=sync) as batch:
            batch.put(b"weights", _array_value(weights))
            batch.put(b"bias", _array_value(bias))
            batch.put(b"settings", pack(settings))
            batch.put(b"counters", pack(counters))
            batch.put(b"flushes", pack(self.flushes + 1))
            batch.put(b"checksum", pack(params_checksum(weights, bias)))

    def close(self, clean: bool) -> None:
        if self.db is None:
            return  # never flushed: nothing was written, so there is nothing to mark or close
        try:
            if clean:
                self.db.put(b"clean", b"1", sync=True)
        except plyvel.Error:
            pass  # not marked clean: the next start treats the stop as a crash, which loses nothing flushed
        finally:
            self.db.close()
