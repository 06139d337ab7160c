"""A neuron's LevelDB through its life: where its first weights come from, write-behind, a full disk.

**Start** (docs/neuron.md, "Death and replacement"): :func:`start_plan` decides from what the
database says -- nothing, a clean stop, a death -- and the policy whether the neuron restores its
last flush, copies the working neuron it is a twin of, is seeded from its siblings (its own last
flush when none answers) or starts fresh. **Write-behind**: learning marks the state dirty and
:meth:`Persistence.flush` writes it whole, in one atomic batch, at the flush interval (``_state``).

**Degraded** (issue 18): when the database cannot be opened or written -- a full disk -- the neuron
keeps serving from memory. Its status says ``persistence: "degraded"`` (and why), a ``flush_failed``
event says so once, and every flush interval (at least every :data:`RETRY_S`) it tries again,
reopening the database; the first write that lands emits ``flush_recovered``. A database that
cannot be opened where it is, is read from a copy in memory (``/dev/shm``), so a replacement on a
full disk still knows whether its predecessor stopped politely and what it last flushed; a dead
neuron's database is then not discarded (policy ``replace``) but kept until the new state can be
written over it: deleting it first would only lose the layer's ``own_last_flush`` fallback. A
failed write leaves the previous flush as it was (LevelDB's atomic batch): nothing flushed is
corrupted.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import plyvel
import zmq

from ..runtime import ControlError, EventPublisher, fan_out, start_early
from ._frames import array_from_wire
from ._math import seed_from_siblings
from ._state import NeuronStore, SavedState, TornState

RETRY_S = 1.0
"""While degraded, the database is retried at the flush interval but not more often than this."""
SEED_TIMEOUT_S = 0.3
SEED_MIN_UPTIME_S = 1.0
"""A sibling younger than this is a newcomer too and is not seeded from."""
COPY_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def start_plan(saved: bool, died: bool, policy: str, twin: bool, seed_requested: bool) -> str:
    """Where a starting neuron's weights come from: ``restore`` (its last flush), ``twin`` (a copy of
    the working neuron), ``seed`` (its siblings' mean; its own last flush if none answers) or ``fresh``."""
    if saved and not (died and policy == "replace"):
        return "restore"
    if twin:
        return "twin"
    if died or seed_requested:
        return "seed"
    return "fresh"


def fetch_params(ctx: zmq.Context, endpoints: dict[str, str], timeout_s: float) -> dict[str, dict]:
    """``get_params`` of every endpoint, asked all at once under one deadline; the dead and the slow are
    left out. (Asked one after the other, a replacement waited for the sum of its siblings' answers, each
    a wake-up of a process on a busy host, and ``timeout_s`` for each sibling that was down.)"""
    answers = fan_out(ctx, endpoints, "get_params", timeout_s)
    return {name: answer for name, answer in answers.items() if not isinstance(answer, ControlError)}


def twin_weights(ctx: zmq.Context, endpoint: str, relay: Callable) -> tuple[np.ndarray, np.ndarray, str]:
    """A twin's weights, bias and origin: the working neuron's at ``endpoint``, as they are now."""
    params = fetch_params(ctx, {endpoint: endpoint}, SEED_TIMEOUT_S * 10).get(endpoint)
    if params is None:
        raise ControlError("unreachable", f"the working neuron {endpoint} did not give its parameters")
    return relay(array_from_wire(params["weights"]), layout_of(params)), array_from_wire(params["bias"]), endpoint


def layout_of(params: dict) -> list[tuple[str, int]]:
    """The input layout (``(peer, width)`` in order) that saved or fetched weights were laid out for."""
    return [(src, int(params["widths"][src])) for src in params["inputs"]]


def _saved_layout(saved: SavedState) -> list[tuple[str, int]] | None:
    return layout_of(saved.settings) if "inputs" in saved.settings else None


def read_copy(path: str) -> tuple[SavedState | None, bool]:
    """A database that cannot be opened in place (a full disk), read from a copy in memory: its last
    flush (None when unreadable) and whether the run that wrote it stopped politely."""
    copy = tempfile.mkdtemp(prefix="neurox-db-", dir=COPY_DIR)
    try:
        shutil.copytree(path, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns("LOCK"))
        store = NeuronStore(copy)
        try:
            return store.load(), store.was_clean
        finally:
            store.close(clean=False)
    except (OSError, plyvel.Error, TornState):
        return None, False
    finally:
        shutil.rmtree(copy, ignore_errors=True)


class Persistence:
    """The database at ``path`` of neuron ``owner``; ``counters`` is the neuron's (``flush_errors``)."""

    def __init__(self, path: str, owner: str, events: EventPublisher, counters: dict):
        self.path, self.owner, self.events, self.counters = path, owner, events, counters
        self.store: NeuronStore | None = None
        self.degraded: str | None = None
        """What went wrong, while the state in memory cannot be written (None: all is on disk, or will be)."""
        self.marked = False
        self.flushed_updates = counters["updates"]
        self.next_flush = 0.0
        self.discarding: Future | None = None
        """The dead run's database being removed behind the start (see :meth:`start`)."""

    @property
    def dirty(self) -> bool:
        """Something changed since the last flush: an update, or a change marked by hand."""
        return self.marked or self.counters["updates"] != self.flushed_updates

    def mark(self) -> None:
        self.marked = True

    def open(self) -> tuple[SavedState | None, bool]:
        """What the database holds, and whether the last run died (did not stop politely)."""
        existed = os.path.exists(self.path)
        try:
            self.store = NeuronStore(self.path)
        except plyvel.Error as exc:
            self._degrade(f"cannot open {self.path}: {exc}")
            self.marked = True
            saved, clean = read_copy(self.path)
            return saved, not clean
        died = existed and not self.store.was_clean
        try:
            return self.store.load(), died
        except TornState as exc:  # never use a torn state: behave as after a death, with nothing saved
            print(f"neuron {self.owner}: {exc}; starting as a replacement", file=sys.stderr, flush=True)
            return None, True

    def start(self, policy: str, seed_requested: bool, shape: tuple[int, int], rng: np.random.Generator,
              fresh: Callable[[], tuple], relay: Callable[[np.ndarray, list | None], np.ndarray],
              siblings: Callable[[], list], twin: Callable[[], tuple] | None = None, init: str = "xavier",
              after_crash: bool = False) -> tuple:
        """``(weights, bias, origin, saved)``: where the neuron starts from (``origin`` is what its status
        shows as ``started``), and the saved state it restored (its settings and counters go on), if any.

        ``fresh()`` gives first-start weights, ``relay(weights, layout)`` re-lays saved ones for the
        current inputs, ``siblings()`` the siblings' ``(id, weights, bias)``, ``twin()`` the working
        neuron's weights, bias and endpoint; ``init`` the rule of weights drawn anew (no usable sibling).

        ``after_crash`` (the supervisor says this start replaces a crashed run): under policy ``replace``
        the dead run's database would only be discarded, so it is not opened at all when a sibling
        answers -- LevelDB's open syncs a new manifest, 2-15 ms with long tails on a shared disk -- and is
        removed on a thread while the neuron serves; its first flush, at the flush interval, makes a new one.
        """
        answers = None
        if after_crash and policy == "replace" and twin is None and os.path.exists(self.path):
            answers = siblings()  # the dead run's database would only be discarded: not even opened
            if answers:
                self.discarding = start_early(NeuronStore.discard, self.path)
                self.marked = True  # its first flush makes the new database (or finds the disk full)
                return self._seeded(answers, shape, rng, init, policy, "replacement")
        saved, died = self.open()
        plan = start_plan(saved is not None, died, policy, twin is not None, seed_requested)
        if plan == "restore":
            origin = {"restored": {"flushes": saved.flushes, "after": "crash" if died else "polite stop"}}
            return relay(saved.weights, _saved_layout(saved)), saved.bias.astype(np.float32), origin, saved
        if plan == "twin":
            weights, bias, endpoint = twin()
            return weights, bias, {"seeding": {"method": "twin", "of": endpoint}}, None
        if died and self.degraded is None:  # unreadable in place: kept until the new state is written over it
            self.discard()
        if plan == "fresh":
            return (*fresh(), {"fresh": True}, None)
        answers = siblings() if answers is None else answers
        reason = "replacement" if died else "new neuron"
        if not answers and saved is not None:  # the whole layer went at once: its own last flush beats random
            origin = {"seeding": {"method": "own_last_flush", "siblings": [], "policy": policy, "reason": reason}}
            return relay(saved.weights, _saved_layout(saved)), saved.bias.astype(np.float32), origin, saved
        return self._seeded(answers, shape, rng, init, policy, reason)

    @staticmethod
    def _seeded(answers: list, shape: tuple[int, int], rng: np.random.Generator, init: str, policy: str,
                reason: str) -> tuple:
        weights, bias, used = seed_from_siblings([a[1:] for a in answers], *shape, rng, init=init)
        origin = {"seeding": {"method": "siblings_mean" if used else "fresh", "policy": policy, "reason": reason,
                              "siblings": [a[0] for a in answers][:used]}}
        return weights, bias, origin, None

    def discard(self) -> None:
        """Remove a dead neuron's database (policy ``replace``); a new one is made by the first flush."""
        if self.store is not None:
            self.store.close(clean=False)
        NeuronStore.discard(self.path)
        try:
            self.store = NeuronStore(self.path)
        except plyvel.Error as exc:  # it could not even be removed: the next flush tries again
            self.store = None
            self._degrade(f"cannot open {self.path}: {exc}")

    def flush(self, state: Callable[[], tuple], interval_s: float, sync: bool = False) -> None:
        """Write ``state()`` -- weights, bias, settings, counters -- if anything changed (always with
        ``sync``); a failure degrades and is retried at the next flush, a success recovers."""
        if self.dirty or sync:
            updates = self.counters["updates"]
            try:
                if self.store is None:
                    self._discarded()
                    self.store = NeuronStore(self.path)
                self.store.flush(*state(), sync=sync)
            except plyvel.Error as exc:
                self.counters["flush_errors"] += 1
                self._degrade(str(exc))
            else:
                self.marked, self.flushed_updates = False, updates
                if self.degraded is not None:
                    self.degraded = None
                    self.events.emit("flush_recovered", id=self.owner, flushes=self.store.flushes, persistence="ok")
        self.next_flush = time.monotonic() + (max(interval_s, RETRY_S) if self.degraded else interval_s)

    def _discarded(self) -> None:
        """Wait until the dead run's database is gone (if it was being removed): a flush makes a new one."""
        if self.discarding is not None:
            self.discarding.result()
            self.discarding = None

    def _degrade(self, detail: str) -> None:
        if self.degraded is None:
            print(f"neuron {self.owner}: cannot write its state ({detail}); serving from memory, will retry",
                  file=sys.stderr, flush=True)
            self.events.emit("flush_failed", id=self.owner, detail=detail, persistence="degraded")
        self.degraded = detail

    def status(self) -> dict:
        store = self.store
        return {"persistence": "degraded" if self.degraded else "ok", "persistence_detail": self.degraded,
                "flushes": store.flushes if store else 0, "last_flush_t": store.last_flush_t if store else None,
                "last_flush_ms": store.last_flush_ms if store else None}

    def close(self, clean: bool) -> None:
        """Close the database; ``clean`` marks that this run stopped politely with everything written."""
        if self.store is not None and not self.store.closed:
            self.store.close(clean=clean)


def sibling_weights(ctx: zmq.Context, endpoints: dict[str, str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The weights of every sibling that answers and has been up long enough to have learnt."""
    return [(name, array_from_wire(p["weights"]), array_from_wire(p["bias"]))
            for name, p in fetch_params(ctx, endpoints, SEED_TIMEOUT_S).items()
            if p.get("uptime_s", SEED_MIN_UPTIME_S) >= SEED_MIN_UPTIME_S]
