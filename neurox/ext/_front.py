"""What MessengerIn does to every packet on its way into the first layer: scale it, the same for all.

Every origin -- MessengerIn's own clients, the stream, the webhook, the eye, ``neurox run``'s feed,
third-party origins -- sends its forward frames through MessengerIn (to :func:`feed_endpoint`, or as a
request), so one :class:`Front` scales them all with one set of statistics (see ``_scaling``): the
inputs, and for a regression network the targets too. A regression packet's meta gets ``units``, the
targets' scale *before* this packet was learnt, with which the end neuron turns the answer back into the
user's units (``neuron.to_user_units``), and ``user_targets``, its targets as they came (the neurons learn
from ``targets``, scaled). Non-finite values are refused (``non_finite``).

The statistics live in the network's data directory, ``scaling/`` (a LevelDB: keys ``inputs`` and
``targets``, msgpack maps), written behind every ``FLUSH_INTERVAL_S`` and at a polite stop, so they
survive MessengerIn's restarts and the network's (``neurox run`` without ``--fresh``). A disk that
cannot take them is counted (``persistence_errors``); scaling goes on from memory.
"""
from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np
import plyvel

from ..neuron import FORWARD, INPUT, Topology, decode_frame, encode_forward, split_rows
from ..runtime import FrameError, Reply, ipc_endpoint, pack, unpack, unpack_map
from ._datasets import DatasetError, load_dataset
from ._recall import Recall
from ._samples import InputError
from ._scaling import ScaleConfig, Scaler, scale_config

FLUSH_INTERVAL_S = 1.0
LOCK_WAIT_S = 2.0
"""A replacement MessengerIn may start while its SIGKILLed predecessor still holds the database's lock."""
STATE_DIR = "scaling"


def feed_endpoint(run_dir: str) -> str:
    """The PULL on which MessengerIn takes every other origin's forward frames."""
    return ipc_endpoint(run_dir, "messenger.feed")


def _finite(values: np.ndarray, what: str) -> None:
    """InputError ``non_finite`` if ``values`` hold a NaN or an infinity (the ndarray's ``all``: ``np.all``'s
    Python wrapper costs more than the check)."""
    if not np.isfinite(values).all():
        raise InputError("non_finite", f"{what} holds NaN or infinity (or a number too large for float32)")


class ScalingStore:
    """The statistics' LevelDB; every failure is counted by the caller, never raised further."""

    def __init__(self, data_dir: str):
        self.path = os.path.join(data_dir, STATE_DIR)
        self.db: plyvel.DB | None = None

    def _open(self) -> plyvel.DB:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                return plyvel.DB(self.path, create_if_missing=True, write_buffer_size=64 * 1024)
            except plyvel.IOError as exc:
                if "lock" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def load(self) -> dict:
        """``{"inputs": state, "targets": state}`` as last written (empty maps if nothing was)."""
        if not os.path.isdir(self.path):
            return {}
        self.db = self._open()
        found = {}
        for key in ("inputs", "targets"):
            value = self.db.get(key.encode())
            if value is not None:
                try:
                    found[key] = unpack(value)
                except FrameError:
                    pass  # not ours to understand: start that scaler anew
        return found

    def save(self, states: dict, sync: bool = False) -> None:
        if self.db is None:
            self.db = self._open()
        with self.db.write_batch(transaction=True, sync=sync) as batch:
            for key, state in states.items():
                batch.put(key.encode(), pack(state))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


class Incoming(NamedTuple):
    """One packet of another origin's forward frame, checked: its id, its rows as they came, a
    regression's target values (or None), whether it is learnt from, its meta, and the meta's bytes as
    they came (None if it was not bytes)."""

    packet: int
    rows: np.ndarray
    values: np.ndarray | None
    learn: bool
    meta: dict
    packed: bytes | None


class Front:
    """The scalers of one network (inputs, and targets if it regresses) and their persistence."""

    def __init__(self, topology: Topology, data_dir: str):
        self.config = scale_config(getattr(topology, "input", None))
        end = topology.settings_of(topology.layers[-1].neurons[0])
        self.regression = end["activation"] != "softmax"
        self.outputs = int(end["units"])
        self.width = topology.input_width
        target_mode = "standard" if self.config.mode == "minmax" else self.config.mode
        self.store = ScalingStore(data_dir)
        self.counters = {"scaled": 0, "non_finite": 0, "persistence_errors": 0}
        try:
            saved = self.store.load()
        except (plyvel.Error, OSError):
            self.counters["persistence_errors"] += 1
            saved = {}
        self.inputs = Scaler.from_state(saved.get("inputs", {}), self.width, self.config)
        self.targets = Scaler.from_state(saved.get("targets", {}), self.outputs,
                                         ScaleConfig(target_mode, self.config.frozen_after))
        self.dirty = False
        self.next_flush = time.monotonic() + FLUSH_INTERVAL_S
        self.lessons: dict = {}
        """The education file last read (path -> Dataset), for the ``education`` op."""
        self.recall = Recall(self.width)
        """Awake replay (``_recall``): stored experience appended to each packet learnt from."""

    def prepare(self, rows: np.ndarray, targets: list | None, learn: bool) -> tuple[np.ndarray, list | None, dict]:
        """(rows, targets, meta additions) in the network's units; InputError ``non_finite``."""
        return self._apply(*self._checked(rows, targets), targets, learn)

    def _apply(self, rows: np.ndarray, values: np.ndarray | None, targets, learn: bool) -> tuple:
        """:meth:`prepare` for rows (and a regression's target ``values``) already checked."""
        extra = {}
        if learn and targets is not None:
            self.inputs.learn(rows)
            self.dirty = True
        scaled = self.inputs.transform(rows)
        if self.regression:
            offset, factor = self.targets.unit_scale()
            extra["units"] = {"offset": offset.tolist(), "factor": factor.tolist()}
            if values is not None:
                extra["user_targets"] = values.tolist()
                if learn:
                    self.targets.learn(values)
                targets = self.targets.transform(values).tolist()
        self.counters["scaled"] += len(rows)
        return scaled, targets, extra

    def _checked(self, rows, targets) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows (and a regression's targets) as arrays; InputError ``non_finite`` before anything is learnt."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, self.width)
        _finite(rows, "the vector")
        if not self.regression or targets is None:
            return rows, None
        try:
            values = np.asarray(targets, dtype=np.float64).reshape(-1, self.outputs)
        except (TypeError, ValueError):
            raise InputError("bad_input", f"the targets are not rows of {self.outputs} numbers") from None
        _finite(values, "the target")
        return rows, values

    def forward(self, frames: list[bytes]) -> tuple[bytes | None, list, list[Exception]]:
        """Origins' forward frames, scaled, as one bundle for the first layer (one message for everything
        that was waiting, as neurons bundle theirs): its packets' rows (and regression targets) in the
        network's units; the (rows, targets, rows as they came) it learns from (for the hippocampus); and what was
        refused, a frame at a time: FrameError (not a forward frame from outside), InputError
        ``non_finite`` (nothing of that frame is learnt). The bundle is None if nothing was left."""
        taken, refused = [], []
        for frame in frames:
            try:
                taken.extend(self._read_frame(frame))
            except (FrameError, InputError) as exc:
                refused.append(exc)
        bundle = ([], [], [], [])  # packets, blocks, learn flags, metas
        learnt = []
        done = [self._apply(came.rows, came.values, came.meta.get("targets"), came.learn) for came in taken] if (
            self.regression) else self._scan(taken)
        for (packet, raw, _, lrn, meta, packed), (scaled, targets, extra) in zip(taken, done):
            if targets is not None and self.regression:
                meta["targets"] = targets
            came = meta
            if lrn and targets is not None:
                learnt.append((scaled, targets, raw))
                scaled, meta = self.recall.add(scaled, meta, self.inputs.transform)  # not new experience
            if extra or meta is not came or self.regression or packed is None:
                packed = pack({**meta, **extra})  # else the meta as it came: nothing was added to it
            for part, value in zip(bundle, (packet, scaled, lrn, packed)):
                part.append(value)
        packets, blocks, learn, metas = bundle
        return (encode_forward(INPUT, packets, blocks, learn, metas) if packets else None), learnt, refused

    def _read_frame(self, frame: bytes) -> list[Incoming]:
        """A forward frame's packets, all checked before any is learnt from (one bad packet refuses the frame)."""
        _, src, packets, rows, data, learn, metas = decode_frame(frame, (FORWARD,))
        if src != INPUT:
            raise FrameError("unknown_source", f"a forward frame into the network comes from {INPUT!r}, not {src!r}")
        blocks = split_rows(data, rows, self.width)
        packed = [m if isinstance(m, bytes) else None for m in metas]
        metas = [{} if m is None else unpack_map(m) for m in packed]
        if not self.regression:
            _finite(np.frombuffer(data, dtype="<f4"), "the vector")
            return [Incoming(p, b, None, bool(lrn), m, raw) for p, b, lrn, m, raw in zip(packets, blocks, learn, metas, packed)]
        return [Incoming(p, *self._checked(b, m.get("targets")), bool(lrn), m, raw)
                for p, b, lrn, m, raw in zip(packets, blocks, learn, metas, packed)]

    def _scan(self, taken: list[Incoming]) -> list[tuple]:
        """:meth:`_apply` for every packet of a classifying bundle at once (``Scaler.scan``): each packet
        scaled with the statistics of what came before it and itself, as one after another would be."""
        if not taken:
            return []
        sizes = [len(came.rows) for came in taken]
        learns = np.repeat([came.learn and came.meta.get("targets") is not None for came in taken], sizes)
        scaled = self.inputs.scan(np.concatenate([came.rows for came in taken]), learns)
        self.dirty = self.dirty or bool(learns.any())
        self.counters["scaled"] += len(learns)
        ends = np.cumsum(sizes).tolist()
        return [(scaled[end - size:end], came.meta.get("targets"), {}) for end, size, came in zip(ends, sizes, taken)]

    def tick(self, now: float) -> float:
        """Write the statistics behind; seconds until the next write is due."""
        if now >= self.next_flush:
            if self.dirty:
                self.flush()
            self.next_flush = now + FLUSH_INTERVAL_S
        return max(0.0, self.next_flush - now)

    def flush(self, sync: bool = False) -> None:
        try:
            self.store.save({"inputs": self.inputs.to_state(), "targets": self.targets.to_state()}, sync)
            self.dirty = False
        except (plyvel.Error, OSError):
            self.counters["persistence_errors"] += 1

    def state(self) -> dict:
        """The ``scaling`` op's answer: the mode and both scalers' statistics."""
        return {"mode": self.config.describe(), "task": "regression" if self.regression else "classification",
                "inputs": self.inputs.summary(), "targets": self.targets.summary() if self.regression else None,
                "state": {"inputs": self.inputs.to_state(), "targets": self.targets.to_state()}}

    def lesson(self, path: str) -> dict:
        """The ``education`` op's answer: the dataset file at ``path`` in the network's units as they are
        now -- rows scaled, a regression's targets too -- and nothing learnt from it. The maintenance
        worker dreams it (``[maintenance] education``): it asks here, so the brain below needs neither
        the dataset reader nor the scaler."""
        if path not in self.lessons:  # read once: MessengerIn's clients wait while it reads
            try:
                self.lessons = {path: load_dataset(path)}
            except (DatasetError, OSError) as exc:
                raise Reply("bad_dataset", str(exc)) from None
        data = self.lessons[path]
        if data.features.shape[1] != self.width:
            raise Reply("wrong_shape", f"{path}: {data.features.shape[1]} features, the network takes {self.width}")
        rows = self.inputs.transform(data.features)
        targets = data.targets.tolist()
        if self.regression:
            targets = self.targets.transform(np.asarray(data.targets, dtype=np.float64).reshape(-1, self.outputs)).tolist()
        rows = np.ascontiguousarray(rows, dtype="<f4")
        return {"rows": rows.tobytes(), "shape": list(rows.shape), "targets": targets}

    def close(self) -> None:
        self.flush(sync=True)
        self.store.close()
