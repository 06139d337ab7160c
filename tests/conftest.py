"""Shared test set-up: tests/ on the launcher's import path, a check that a test leaves no process
behind, and a watcher of a tree's event bus to await conditions instead of sleeping."""
import contextlib
import itertools
import os
import sys
import time

import psutil
import pytest
import zmq

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# The launcher is a separate interpreter: let it import tests/workers.py too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH")) if p)
sys.path.insert(0, TESTS_DIR)

from _busutil import SYNC, join_bus  # noqa: E402 (needs the path above)
from neurox.runtime import ControlClient, unpack_map  # noqa: E402

TOKEN_VARIABLE = "NEUROX_TEST_TOKEN"
_tokens = itertools.count(1)


def processes_with_token(token: str) -> list[psutil.Process]:
    """Live processes (not zombies, not this one) whose environment carries ``token``.

    Every process of a tree inherits the environment the launcher was exec'd with, so this finds
    them even after they were orphaned and adopted by init, and never confuses them with the
    processes of another test run on the same host.
    """
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TOKEN_VARIABLE) == token:
                found.append(proc)
        except psutil.Error:
            continue  # gone meanwhile, or not ours to read
    return found


@contextlib.contextmanager
def leaves_no_process():
    """Mark every process started inside (through the environment it inherits) and, on the way
    out, fail if one of them is still alive shortly after; such a process is killed first, so it
    cannot harm what runs next."""
    token = f"{os.getpid()}-{next(_tokens)}"
    previous = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = token
    try:
        yield token
    finally:
        if previous is None:
            del os.environ[TOKEN_VARIABLE]
        else:
            os.environ[TOKEN_VARIABLE] = previous
        _, alive = psutil.wait_procs(processes_with_token(token), timeout=3.0)
        strays = [(p.pid, p.name()) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
    assert not strays, f"processes left behind: {strays}"


@pytest.fixture
def no_stray_processes():
    """The test leaves no process behind: no ``nx:*``, ``nx-launcher``, ``nx-spare``, nor any other."""
    with leaves_no_process() as token:
        yield token


class TreeEvents:
    """Every event a tree published, in bus order: the bus's history up to the moment this watcher
    joined, then what its SUB receives.

    A SUB joins a PUB late (its subscription travels after the connection), so the watcher pushes
    sync events into the bus until one comes back on the SUB: from then on nothing is missed, and the
    history up to that sync event covers what came before.
    """

    def __init__(self, tree, timeout: float = 10.0):
        ctx = zmq.Context.instance()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(tree.events)
        self.events: list[dict] = []
        history = ControlClient(ctx, tree.events_control, timeout)
        try:
            token = join_bus(self.sub, tree.events_sink, timeout)
            past = history.call("recent_events", limit=100_000)
        finally:
            history.close()
        upto = next(n for n, e in enumerate(past) if e["event"] == SYNC and e.get("token") == token)
        self.events = [e for e in past[:upto] if e["event"] != SYNC]

    def _receive(self, timeout_ms: int) -> bool:
        if not self.sub.poll(timeout_ms):
            return False
        while True:
            event = unpack_map(self.sub.recv_multipart()[1])
            if event["event"] != SYNC:
                self.events.append(event)
            if not self.sub.poll(0):
                return True

    def named(self, name: str, **fields) -> list[dict]:
        """The events so far called ``name`` whose fields equal ``fields``, in order."""
        self._receive(0)
        return [e for e in self.events if e["event"] == name and all(e.get(k) == v for k, v in fields.items())]

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0, **fields) -> list[dict]:
        """Wait until at least ``count`` events like ``named(name, **fields)`` have been seen; those."""
        deadline = time.monotonic() + timeout
        while len(found := self.named(name, **fields)) < count:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise AssertionError(f"waited {timeout} s for {count} x {name} {fields}; saw {len(found)}: "
                                     f"{[(e['event'], e.get('source'), e.get('id')) for e in self.events[-20:]]}")
            self._receive(left_ms)
        return found

    def close(self) -> None:
        self.sub.close()


@pytest.fixture
def watch():
    """``watch(tree)`` -> a :class:`TreeEvents` on that tree, closed after the test."""
    watchers = []

    def make(tree) -> TreeEvents:
        watchers.append(TreeEvents(tree))
        return watchers[-1]

    yield make
    for watcher in watchers:
        watcher.close()
