"""The per-host process launcher: a warm parent that forks workers and supervisors on request.

Starting a Python process that imports numpy, pyzmq, msgpack and plyvel costs 120-300 ms; a fork
of a process that has already imported them costs about 2 ms. The launcher is that process. It is
single-threaded and never creates a ZeroMQ context, so a fork copies no I/O threads and no sockets;
each child makes its own context after the fork.

Supervisors talk to it over a unix SOCK_SEQPACKET socket (one msgpack map per packet):

* ``{"op": "spawn", "target": "pkg.mod:func", "args": {...}, "env": {...}}`` -> ``{"ev": "spawned", "pid": N}``
  (or ``{"ev": "spawn_failed", "detail": ...}``), later ``{"ev": "ready", "pid": N, "info": {...}}`` when the
  child calls :func:`notify_ready`, and ``{"ev": "exit", "pid": N, "reason": {...}}`` when it ends.
* ``{"op": "signal", "pid": N, "sig": S}`` signals a live child of that connection (never a reaped pid).
* A spawn with ``"respawn": true`` is started again at once if it crashes on its own once ready (not by a
  signal its connection asked for): the same request, its ``env`` with ``after: "crash"``, and the
  ``exit`` notice names the new pid (``replacement``), whose ``ready`` and ``exit`` follow as for any
  spawn. A one_for_one supervisor asks for it: it would restart the child anyway, and this takes its
  round trip (two wake-ups of two processes, the longest part of a restart on a loaded host) off the
  restart; it still counts the restart and gives up as before (see ``supervisor_tree._supervisor``).
* A request longer than ``PART_BYTES`` once packed is sent in pieces: ``{"op": "part", "data": b"..."}``
  packets, the last one ``{"op": "end", "data": b"..."}``; the pieces joined are the packed request.

A target function may carry ``before_spawn(args) -> bool``: the launcher runs it before each fork of
that target, so work whose result every such child needs (a neuron's parsed topology) is done once here
and inherited; True means it made something new, and the spare, forked before, is retired
(see :func:`_prepare`).

Each child is handed its job by a *spare* forked ahead of need when there is one (see ``_fork``),
so the fork is not on the restart path; the next spare is forked when the launcher is idle. Spawns
that come in a run (a network starting) find spares forked in batches, each batch twice the last
(up to ``SPARE_BATCH_MAX``): after a fork every page of the launcher is shared with the child, and
each page the launcher then writes (Python writes a reference count on every object it touches)
costs a fault and a copy. Forked one at a time, between requests, that was 185-215 faults per
spawn, more CPU than the fork itself; forked back to back, a batch pays them once.

Link semantics: every child belongs to the connection that asked for it. When that connection
closes -- the supervisor ended, even by SIGKILL, so the kernel closed its socket -- the launcher
SIGKILLs all of that connection's children at once; supervisors among them lose their own
connections the same way, so a whole subtree goes. Children also get PR_SET_PDEATHSIG=SIGKILL
against the launcher itself, so nothing outlives the launcher either.

The loop never waits on a client, which would hold every other supervisor's spawns and restarts: a
notice the client's socket cannot take now waits in its outbox (``_outbox``), and one that lets it pass
the bound has stopped reading: it is dropped as if it had exited (its children die), and said so on stderr.
"""
from __future__ import annotations

import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from ._exit import reason_from_wait_status
from ._fork import Spare, fork_child, fork_spare, resolve_target, set_parent_death_signal, set_process_name
from ._outbox import Outbox
from ._wake import WakePipe
from ._wire import pack, unpack_map

PACKET_MAX = 256 * 1024
PART_BYTES = 64 * 1024
"""A request longer than this goes in parts (``part`` packets, then ``end``): a unix socket's send
buffer, which bounds one SOCK_SEQPACKET packet, is about 208 KiB by default, and the root's spawn
request of a 2,000-neuron network (every neuron's child spec) is longer than that."""
REQUEST_MAX = 64 * 1024 * 1024
"""The most a request in parts may add up to."""
PRELOAD = ("numpy", "zmq", "msgpack", "plyvel", "psutil")
"""Modules every NeuroX process needs; imported once here so each fork shares them."""
SPARE_IDLE_S = 0.01
"""With no spare, fork one once the launcher has had nothing to do for this long: a fork right
after a child became ready would compete for the CPU with that child's first answers."""
SPARE_BATCH_MAX = 32
"""The most spares forked back to back when a run of spawns finds none left."""
SPAWN_RUN_S = 0.05
"""Spawns less than this apart are a run: the next batch of spares is twice the last."""
RUN_OVER_S = 0.5
"""Idle this long with spares left from a batch, the run is over: they are retired."""


@dataclass
class _Child:
    pid: int
    conn: socket.socket
    ready_fd: int | None
    respawn: dict | None = None
    """The request to start again if the child crashes on its own once ready (``respawn``)."""
    ready: bool = False
    signalled: bool = False
    """Its connection had it signalled: an end it asked for, never respawned."""
    ready_data: bytearray = field(default_factory=bytearray)


class Launcher:
    """The launcher's state and loop: connections, children by pid, their readiness pipes."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, _Child] = {}
        self.by_ready_fd: dict[int, _Child] = {}
        self.connections: set[socket.socket] = set()
        self.parts: dict[socket.socket, bytearray] = {}
        """Per connection, the parts of a long request received so far."""
        self.outboxes: dict[socket.socket, Outbox] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self.listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self.listener.listen(128)
        self.wakeup = WakePipe()
        self.stopping = False
        self.spares: deque[Spare] = deque()
        self.batch = 0
        """How many spares the last batch had (0: no run of spawns going on)."""
        self.last_spawn = 0.0
        self.selector.register(self.listener, selectors.EVENT_READ, "listen")
        self.selector.register(self.wakeup.fd, selectors.EVENT_READ, "wake")

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> None:
        self.wakeup.catch_signals()
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        while not self.stopping:
            ready = self.selector.select(self._idle_timeout())
            for key, mask in ready:
                tag = key.data
                if tag == "listen":
                    self._accept()
                elif tag == "wake":
                    self.wakeup.drain()
                    self._reap()
                elif tag == "conn":
                    if mask & selectors.EVENT_WRITE:
                        self._flush(key.fileobj)
                    if mask & selectors.EVENT_READ:
                        self._on_request(key.fileobj)
                else:
                    self._on_ready_data(tag)
            if not ready:
                self._settle()
        self._kill_all()

    def _idle_timeout(self) -> float | None:
        """How long to wait for an event before :meth:`_settle` (None: settled, wait for ever)."""
        if not self.spares:
            return SPARE_IDLE_S
        return None if len(self.spares) == 1 and self.spares[0].ahead else RUN_OVER_S

    def _on_stop_signal(self, *_):
        self.stopping = True

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        self.connections.add(conn)
        self.outboxes[conn] = Outbox()
        self.selector.register(conn, selectors.EVENT_READ, "conn")

    def _on_request(self, conn: socket.socket) -> None:
        if conn not in self.connections:
            return  # dropped earlier in this round (a notice to it failed): its readiness is stale
        try:
            packet = conn.recv(PACKET_MAX)
        except OSError:
            packet = b""
        if not packet:
            self._drop_connection(conn)
            return
        op = None
        try:
            request = unpack_map(packet, PACKET_MAX)
            op = request.get("op")
            if op in ("part", "end"):
                request = self._joined(conn, request)
                if request is None:
                    return
                op = request.get("op")
            if op == "spawn":
                self._spawn(conn, request)
            elif op == "signal":
                child = self.children.get(request.get("pid"))
                if child is not None and child.conn is conn:
                    child.signalled = True
                    os.kill(child.pid, int(request.get("sig", signal.SIGTERM)))
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # whatever a request holds (a bad target, no fork), the launcher goes on
            ev = "spawn_failed" if op == "spawn" else "error"
            self._send(conn, {"ev": ev, "detail": f"{type(exc).__name__}: {exc}"})

    def _joined(self, conn: socket.socket, packet: dict) -> dict | None:
        """Keep a ``part`` of a long request; at its ``end``, the whole request."""
        data = packet.get("data")
        if not isinstance(data, bytes):
            self.parts.pop(conn, None)
            raise ValueError("a part carries bytes in 'data'")
        joined = self.parts.setdefault(conn, bytearray())
        joined += data
        if len(joined) > REQUEST_MAX:
            self.parts.pop(conn)
            raise ValueError(f"a request in parts may not exceed {REQUEST_MAX} bytes")
        if packet["op"] == "part":
            return None
        del self.parts[conn]
        return unpack_map(bytes(joined), REQUEST_MAX)

    def _drop_connection(self, conn: socket.socket) -> None:
        """The owner is gone: its children die with it (link semantics)."""
        if conn not in self.connections:
            return
        self.selector.unregister(conn)
        self.connections.discard(conn)
        self.parts.pop(conn, None)
        del self.outboxes[conn]
        conn.close()
        for child in self.children.values():
            if child.conn is conn:
                _kill_quietly(child.pid)

    def _send(self, conn: socket.socket, message: dict) -> None:
        """A notice, sent without waiting (see the module docstring)."""
        if conn not in self.connections:
            return
        outbox = self.outboxes[conn]
        try:
            outbox.send(conn, pack(message))
        except OSError:
            return self._drop_connection(conn)
        if outbox.stuck:
            print(f"nx-launcher: a client left {len(outbox)} notices ({outbox.size} bytes) unread: it stopped "
                  "reading; dropped as gone, its children killed", file=sys.stderr, flush=True)
            self._drop_connection(conn)
        elif len(outbox) == 1:  # the first left waiting: the rest go when the socket is writable
            self.selector.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, "conn")

    def _flush(self, conn: socket.socket) -> None:
        if conn not in self.connections:
            return
        try:
            self.outboxes[conn].flush(conn)
        except OSError:
            return self._drop_connection(conn)
        if not self.outboxes[conn]:
            self.selector.modify(conn, selectors.EVENT_READ, "conn")

    # -- children ---------------------------------------------------------------------------
    def _spawn(self, conn: socket.socket, request: dict) -> None:
        self._send(conn, {"ev": "spawned", "pid": self._launch(conn, request)})

    def _launch(self, conn: socket.socket, request: dict) -> int:
        """Start a child for ``request`` on behalf of ``conn``; its pid."""
        func = resolve_target(request["target"])  # a bad target is refused before anything is forked
        if _prepare(func, request.get("args") or {}):
            self._retire_spares(lambda spare: True)  # forked before what the hook made: not inherited
        pid, ready_r = self._start_child(func, request)
        os.set_blocking(ready_r, False)
        respawn = {**request, "env": {**(request.get("env") or {}), "after": "crash"}} if request.get("respawn") else None
        child = _Child(pid, conn, ready_r, respawn)
        self.children[pid] = child
        self.by_ready_fd[ready_r] = child
        self.selector.register(ready_r, selectors.EVENT_READ, child)
        return pid

    def _start_child(self, func, request: dict) -> tuple[int, int]:
        """Give the job to a spare that is current, else fork; returns the pid and readiness pipe."""
        now = time.monotonic()
        run, self.last_spawn = now - self.last_spawn < SPAWN_RUN_S, now
        while True:
            while self.spares:
                spare = self.spares.popleft()
                if spare.modules != len(sys.modules):
                    spare.retire()  # forked before a module the target needs was imported here
                elif spare.give(request):
                    return spare.pid, spare.ready_r
            if not run:
                return fork_child(os.getpid(), func, request)
            self.batch = min(max(2, 2 * self.batch), SPARE_BATCH_MAX)
            self._fork_spares(self.batch, ahead=False)
            run = bool(self.spares)  # none could be forked: fork this one on demand

    def _fork_spares(self, count: int, ahead: bool) -> None:
        """Fork ``count`` spares back to back (see the module docstring on batches)."""
        for _ in range(count):
            try:
                self.spares.append(fork_spare(os.getpid(), ahead))
            except OSError:
                return  # no process or pipe to spare now (EAGAIN, EMFILE): spawns fork on demand meanwhile

    def _retire_spares(self, which) -> None:
        for spare in [s for s in self.spares if which(s)]:
            self.spares.remove(spare)
            spare.retire()

    def _settle(self) -> None:
        """Idle: the run of spawns is over; keep one spare, one that starts ahead (see ``_fork``)."""
        self.batch = 0
        keep = [spare for spare in self.spares if spare.ahead and spare.modules == len(sys.modules)][:1]
        self._retire_spares(lambda spare: spare not in keep)
        if not self.spares and not self.stopping:
            self._fork_spares(1, ahead=True)

    def _on_ready_data(self, child: _Child) -> None:
        if child.ready_fd is None:
            return  # announced already in this round (its exit was reaped first)
        if self._read_ready(child):
            self._announce_ready(child)

    def _read_ready(self, child: _Child) -> bool:
        """Read what the child wrote; True once its end of the pipe is closed."""
        try:
            while True:
                chunk = os.read(child.ready_fd, 65536)
                if not chunk:
                    return True
                child.ready_data += chunk
        except BlockingIOError:
            return False

    def _announce_ready(self, child: _Child) -> None:
        self.selector.unregister(child.ready_fd)
        del self.by_ready_fd[child.ready_fd]
        os.close(child.ready_fd)
        child.ready_fd = None
        if child.ready_data:  # an empty pipe closed means the child died before it was ready
            child.ready = True
            try:
                info = unpack_map(bytes(child.ready_data))
            except ValueError:
                info = {}
            self._send(child.conn, {"ev": "ready", "pid": child.pid, "info": info})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                self._retire_spares(lambda spare: spare.pid == pid)  # killed from outside, or already retired
                continue
            if child.ready_fd is not None:
                self._read_ready(child)
                self._announce_ready(child)
            reason = reason_from_wait_status(status)
            notice = {"ev": "exit", "pid": pid, "reason": reason.to_wire()}
            if _respawns(child, reason.abnormal) and child.conn in self.connections and not self.stopping:
                try:
                    notice["replacement"] = self._launch(child.conn, child.respawn)
                except Exception:  # noqa: BLE001 -- no replacement named: the supervisor restarts it itself
                    pass
            self._send(child.conn, notice)

    def _kill_all(self) -> None:
        pids = [*self.children, *(spare.pid for spare in self.spares)]
        for pid in pids:
            _kill_quietly(pid)
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def _respawns(child: _Child, crashed: bool) -> bool:
    """Whether an ended child is started again at once: it asked to be, it was ready, and it crashed
    on its own (a signal its connection asked for is a stop, or a kill the supervisor decided)."""
    return child.respawn is not None and child.ready and crashed and not child.signalled


def _prepare(func, args: dict) -> bool:
    """Run the target's ``before_spawn(args)``, if it has one: work done here once (a neuron: parsing
    the network's topology) that the child then inherits instead of doing it itself. The hook returns
    True when it made something new; so does this, and a spare forked before is then out of date.

    Whatever fails here is left for the child to meet again and report as its own start failure,
    with its own exit reason: the launcher never fails a spawn for an optimisation.
    """
    prepare = getattr(func, "before_spawn", None)
    if prepare is None:
        return False
    try:
        made = bool(prepare(args))
    except Exception:  # noqa: BLE001 -- see the docstring: the child does the work and reports
        return False
    if made:
        gc.freeze()  # what it made stays out of the collector, so that forks keep sharing its pages
    return made


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> None:
    """Launcher entry point; arguments: SOCKET_PATH [MODULE_TO_PRELOAD ...].

    A preloaded module may define ``before_fork()``: work done once here (loading lazily-loaded
    parts of libraries, filling caches) instead of in every child after each fork.
    """
    argv = sys.argv[1:] if argv is None else argv
    set_parent_death_signal(signal.SIGKILL)
    set_process_name("nx-launcher")
    for name in (*PRELOAD, *argv[1:]):
        warm_up = getattr(importlib.import_module(name), "before_fork", None)
        if callable(warm_up):
            warm_up()
    gc.collect()
    gc.freeze()  # keep the imported objects out of the collector so forks share their pages
    Launcher(argv[0]).serve()

