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

Link semantics: every child belongs to the connection that asked for it. When that connection
closes -- the supervisor ended, even by SIGKILL, so the kernel closed its socket -- the launcher
SIGKILLs all of that connection's children at once; supervisors among them lose their own
connections the same way, so a whole subtree goes. Children also get PR_SET_PDEATHSIG=SIGKILL
against the launcher itself, so nothing outlives the launcher either.
"""
from __future__ import annotations

import ctypes
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import traceback
from dataclasses import dataclass, field

from ._exit import EXIT_START_FAILED, reason_from_wait_status
from ._wire import pack, unpack_map

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PACKET_MAX = 256 * 1024
PRELOAD = ("numpy", "zmq", "msgpack", "plyvel", "psutil")
"""Modules every NeuroX process needs; imported once here so each fork shares them."""

_libc = ctypes.CDLL(None, use_errno=True)
_ready_fd: int | None = None


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent thread ends."""
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def set_process_name(name: str) -> None:
    """Name the process as ``ps``/``top`` show it (the kernel keeps 15 bytes)."""
    _libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def notify_ready(info: dict | None = None) -> None:
    """Tell the supervisor that started this process that it has finished initialising.

    ``info`` (a msgpack-able map) travels with the notice; a supervisor publishes it in its
    ``child_started`` event. Calling it twice, or in a process not started by a launcher, is a no-op.
    """
    global _ready_fd
    if _ready_fd is None:
        return
    data = pack(info or {})
    view = memoryview(data)
    while view:
        written = os.write(_ready_fd, view)
        view = view[written:]
    os.close(_ready_fd)
    _ready_fd = None


@dataclass
class _Child:
    pid: int
    conn: socket.socket
    ready_fd: int | None
    ready_data: bytearray = field(default_factory=bytearray)


class Launcher:
    """The launcher's state and loop: connections, children by pid, their readiness pipes."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, _Child] = {}
        self.by_ready_fd: dict[int, _Child] = {}
        self.connections: set[socket.socket] = set()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self.listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        self.listener.listen(128)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        self.stopping = False
        self.selector.register(self.listener, selectors.EVENT_READ, "listen")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")

    # -- the loop ---------------------------------------------------------------------------
    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        while not self.stopping:
            for key, _ in self.selector.select():
                tag = key.data
                if tag == "listen":
                    self._accept()
                elif tag == "wake":
                    self._drain_wake()
                    self._reap()
                elif tag == "conn":
                    self._on_request(key.fileobj)
                else:
                    self._on_ready_data(tag)
        self._kill_all()

    def _on_stop_signal(self, *_):
        self.stopping = True

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        self.connections.add(conn)
        self.selector.register(conn, selectors.EVENT_READ, "conn")

    def _on_request(self, conn: socket.socket) -> None:
        try:
            packet = conn.recv(PACKET_MAX)
        except OSError:
            packet = b""
        if not packet:
            self._drop_connection(conn)
            return
        try:
            request = unpack_map(packet, PACKET_MAX)
            op = request.get("op")
            if op == "spawn":
                self._spawn(conn, request)
            elif op == "signal":
                child = self.children.get(request.get("pid"))
                if child is not None and child.conn is conn:
                    os.kill(child.pid, int(request.get("sig", signal.SIGTERM)))
            else:
                self._send(conn, {"ev": "error", "detail": f"unknown op {op!r}"})
        except Exception as exc:  # a bad request must never take the launcher down
            self._send(conn, {"ev": "spawn_failed", "detail": f"{type(exc).__name__}: {exc}"})

    def _drop_connection(self, conn: socket.socket) -> None:
        """The owner is gone: its children die with it (link semantics)."""
        self.selector.unregister(conn)
        self.connections.discard(conn)
        conn.close()
        for child in self.children.values():
            if child.conn is conn:
                _kill_quietly(child.pid)

    def _send(self, conn: socket.socket, message: dict) -> None:
        if conn not in self.connections:
            return
        try:
            conn.send(pack(message))
        except OSError:
            self._drop_connection(conn)

    # -- children ---------------------------------------------------------------------------
    def _spawn(self, conn: socket.socket, request: dict) -> None:
        target = request["target"]
        if not isinstance(target, str) or ":" not in target:
            raise ValueError(f"target must be 'module:function', got {target!r}")
        module_name, func_name = target.split(":", 1)
        func = getattr(importlib.import_module(module_name), func_name)
        ready_r, ready_w = os.pipe()
        launcher_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._become_child(launcher_pid, ready_w, func, request)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        child = _Child(pid, conn, ready_r)
        self.children[pid] = child
        self.by_ready_fd[ready_r] = child
        self.selector.register(ready_r, selectors.EVENT_READ, child)
        self._send(conn, {"ev": "spawned", "pid": pid})

    def _become_child(self, launcher_pid: int, ready_w: int, func, request: dict) -> None:
        """Runs in the forked child: cut every tie to the launcher's state, then run the target."""
        global _ready_fd
        code = 1
        try:
            set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != launcher_pid:  # the launcher died before the signal was armed
                os._exit(EXIT_START_FAILED)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            os.closerange(3, ready_w)
            os.closerange(ready_w + 1, 65536)
            _ready_fd = ready_w
            env = request.get("env") or {}
            set_process_name(env.get("name", "neurox"))
            func(request.get("args") or {}, env)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

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
                continue
            if child.ready_fd is not None:
                self._read_ready(child)
                self._announce_ready(child)
            reason = reason_from_wait_status(status)
            self._send(child.conn, {"ev": "exit", "pid": pid, "reason": reason.to_wire()})

    def _kill_all(self) -> None:
        for pid in list(self.children):
            _kill_quietly(pid)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


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

