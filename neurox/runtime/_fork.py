"""The child side of the launcher: what a process does between ``fork()`` and its target.

A child arms PR_SET_PDEATHSIG against the launcher, drops the launcher's signal handlers and every
inherited descriptor except its readiness pipe, names itself, and runs ``target(args, env)``; its
exit code is the target's (``SystemExit``), 0 when the target returns, 1 when it raises.

A **spare** is a child forked ahead of need that has done all of that except running a target: it
waits on a pipe for its job. Handing a job to a spare takes the fork (2-10 ms on a small VM, with
long tails under load) off the restart path. While it waits, a spare also starts what every NeuroX
process starts first: a ZeroMQ context with its I/O thread running (:func:`new_context` hands it to
the target) and a thread for start work that waits on the disk (:func:`start_early`). A spare is a
snapshot of the launcher: one forked before the launcher imported a target's module would have to
import it itself, so the launcher retires a spare when its module count has changed
(:attr:`Spare.modules`).
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from queue import SimpleQueue

import zmq

from ._exit import EXIT_START_FAILED
from ._wire import pack, unpack_map

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
SPARE_NAME = "nx-spare"

_libc = ctypes.CDLL(None, use_errno=True)
_ready_fd: int | None = None
_ahead: dict = {}
"""What this process's spare started while it waited: ``ctx`` and ``tasks``, until a target takes them."""


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent *thread* ends."""
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
    _write_all(_ready_fd, pack(info or {}))
    os.close(_ready_fd)
    _ready_fd = None
    _release_ahead()


def new_context() -> zmq.Context:
    """A new ZeroMQ context, for a process's own use: in a child that was a spare, the first call
    returns the context the spare started while it waited, its I/O thread already running (0.5-1 ms
    less on the start path: the context, and the threads its first socket starts)."""
    ctx = _ahead.pop("ctx", None)
    return ctx if ctx is not None else zmq.Context()


def start_early(func: Callable, *args, **kwargs) -> Future:
    """Run ``func`` on a thread of its own (which ends with it) while the caller goes on setting up:
    for start work that waits on the disk, like a LevelDB open (it writes and syncs a new manifest:
    1-5 ms on a busy disk), while the sockets are made. ``func`` should release the GIL while it
    waits, as plyvel's open does. In a child that was a spare, the first call before
    :func:`notify_ready` takes the thread the spare started while it waited."""
    tasks = _ahead.pop("tasks", None) or _early_thread()
    future: Future = Future()
    tasks.put((func, args, kwargs, future))
    return future


def _early_thread() -> SimpleQueue:
    """A thread that runs the first task put in the queue it returns, and ends (also on ``None``)."""
    tasks: SimpleQueue = SimpleQueue()
    threading.Thread(target=_run_early, args=(tasks,), name="nx-early", daemon=True).start()
    return tasks


def _run_early(tasks: SimpleQueue) -> None:
    task = tasks.get()
    if task is None:
        return
    func, args, kwargs, future = task
    try:
        future.set_result(func(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 -- handed to whoever waits on the future
        future.set_exception(exc)


def _start_ahead() -> None:
    """In a spare, before it waits: the context and the thread that :func:`new_context` and
    :func:`start_early` hand out, so that starting them is not on the path of a restart."""
    ctx = zmq.Context()
    ctx.socket(zmq.PAIR).close(linger=0)  # a context's first socket starts its I/O thread
    _ahead.update(ctx=ctx, tasks=_early_thread())


def _release_ahead() -> None:
    """Once the target is ready, end what it did not take: start work is done by then."""
    tasks, ctx = _ahead.pop("tasks", None), _ahead.pop("ctx", None)
    if tasks is not None:
        tasks.put(None)
    if ctx is not None:
        ctx.term()


def resolve_target(target) -> Callable[[dict, dict], None]:
    """The function named by ``"package.module:function"`` (imported if need be)."""
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f"target must be 'module:function', got {target!r}")
    module_name, func_name = target.split(":", 1)
    func = getattr(importlib.import_module(module_name), func_name)
    if not callable(func):
        raise TypeError(f"{target} is not callable")
    return func


@dataclass
class Spare:
    """A forked child waiting for its job: the launcher writes the job to ``job_w`` and closes it."""

    pid: int
    job_w: int
    ready_r: int
    modules: int
    """``len(sys.modules)`` in the launcher when the spare was forked."""
    ahead: bool
    """Whether it starts a context and a thread ahead of its job (see :func:`fork_spare`)."""

    def give(self, request: dict) -> bool:
        """Hand the spawn request over; False if the spare is gone. The spare is used up either way."""
        try:
            _write_all(self.job_w, pack(request))
            return True
        except BrokenPipeError:
            os.close(self.ready_r)
            return False
        finally:
            os.close(self.job_w)

    def retire(self) -> None:
        """Let an unused spare go: with its job pipe closed and no job in it, it exits with 0."""
        os.close(self.job_w)
        os.close(self.ready_r)


def fork_child(launcher_pid: int, func: Callable, request: dict) -> tuple[int, int]:
    """Fork a child running ``func`` for ``request``; returns its pid and its readiness pipe."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(launcher_pid, ready_w, (), lambda: (func, request))
    os.close(ready_w)
    return pid, ready_r


def fork_spare(launcher_pid: int, ahead: bool = True) -> Spare:
    """Fork a spare; it prepares itself and then blocks until it is given a job or retired. With
    ``ahead`` it also starts a context and a thread while it waits (the spare a restart will take;
    a spare of a batch is taken at once, with no time to gain)."""
    job_r, job_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(launcher_pid, ready_w, (job_r,), lambda: _await_job(job_r, ahead))
    os.close(job_r)
    os.close(ready_w)
    return Spare(pid, job_w, ready_r, len(sys.modules), ahead)


def _await_job(job_r: int, ahead: bool) -> tuple[Callable, dict] | None:
    set_process_name(SPARE_NAME)
    if ahead:
        _start_ahead()
    data = bytearray()
    while chunk := os.read(job_r, 65536):
        data += chunk
    os.close(job_r)
    if not data:
        return None  # retired
    request = unpack_map(bytes(data), len(data))
    return resolve_target(request["target"]), request


class ParentGone(Exception):
    """Raised in a child that finds its launcher gone: the tree dies with the launcher, quietly."""


def _child(launcher_pid: int, ready_w: int, keep: tuple[int, ...], get_job) -> None:
    """Runs in the forked process and never returns: cut every tie to the launcher, then work."""
    global _ready_fd
    code = 1
    try:
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != launcher_pid:  # the launcher died before the signal was armed
            os._exit(EXIT_START_FAILED)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _close_fds_except((ready_w, *keep))
        job = get_job()
        if job is not None:
            func, request = job
            _ready_fd = ready_w
            env = request.get("env") or {}
            set_process_name(env.get("name", "neurox"))
            func(request.get("args") or {}, env)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ParentGone:
        code = 1  # the launcher died and its parent-death signal is taking the tree: an echo, not news
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _close_fds_except(keep: tuple[int, ...]) -> None:
    """Close every descriptor from 3 up except ``keep`` (stdio stays, for the logs)."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
