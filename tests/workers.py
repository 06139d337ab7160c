"""Launcher targets with scripted behaviour, for the supervision and launcher tests, and
:func:`spec` to put one in a tree.

The launcher imports this module (conftest puts tests/ on PYTHONPATH). :func:`serve` is the
scriptable worker; its ``args``:

- ``fail_start``: exit with code 2 before becoming ready; ``fail_when_exists`` (a path): the same,
  while that file exists; ``fail_after_first_start`` (a path): the first start creates it, every later
  start fails;
- ``start_delay_s``: sleep before becoming ready;
- ``ignore_sigterm``: the polite stop is ignored (only SIGKILL ends it); ``stop_delay_s``: on
  SIGTERM, take this long before exiting with EXIT_SHUTDOWN;
- ``marker_dir``: write ``<path>.started`` and, on SIGTERM, ``<path>.stopped`` there, each holding
  ``time.monotonic()`` (one clock for every process of the host), with ``path`` the tree path;
- ``exit_after_s`` / ``exit_code``: exit with that code this long after becoming ready.

It binds a ROUTER at ``env['control']``, says ``{"pid", "args"}`` when ready, and answers ``ping`` with ``pong`` and ``exit`` (``code``)
by exiting with that code right after replying.
"""
import os
import signal
import threading
import time

import zmq

from neurox.runtime import EXIT_SHUTDOWN, new_context, notify_ready, pack, start_early, unpack_map


def serve(args: dict, env: dict) -> None:
    _maybe_fail(args)
    _mark(args, env, "started")
    if args.get("start_delay_s"):
        time.sleep(args["start_delay_s"])
    if args.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: _stop(args, env))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(env["control"])
    notify_ready({"pid": os.getpid(), "args": args, "after": env.get("after")})
    if args.get("exit_after_s") is not None:
        time.sleep(args["exit_after_s"])
        raise SystemExit(args.get("exit_code", 1))
    while True:
        frames = sock.recv_multipart()
        request = unpack_map(frames[-1])
        if request.get("op") == "exit":
            sock.send_multipart([*frames[:-1], pack({"ok": True, "result": "bye", "rid": request.get("rid")})])
            sock.setsockopt(zmq.LINGER, 1000)
            sock.close()
            ctx.term()  # returns once the reply has left (or after the linger)
            os._exit(request.get("code", 0))
        sock.send_multipart([*frames[:-1], pack({"ok": True, "result": "pong", "rid": request.get("rid")})])


def _maybe_fail(args: dict) -> None:
    if args.get("fail_start"):
        raise SystemExit(2)
    if args.get("fail_when_exists") and os.path.exists(args["fail_when_exists"]):
        raise SystemExit(2)
    once = args.get("fail_after_first_start")
    if once:
        if os.path.exists(once):
            raise SystemExit(2)
        open(once, "w").close()


def _mark(args: dict, env: dict, what: str) -> None:
    if args.get("marker_dir"):
        name = f"{env['path'].replace('/', '.')}.{what}"
        with open(os.path.join(args["marker_dir"], name), "w") as f:
            f.write(repr(time.monotonic()))


def _stop(args: dict, env: dict) -> None:
    _mark(args, env, "stopped")
    if args.get("stop_delay_s"):
        time.sleep(args["stop_delay_s"])
    os._exit(EXIT_SHUTDOWN)


def report_fds(args: dict, env: dict) -> None:
    """Become ready saying which descriptors this process has (number, what it is), then wait to be stopped."""
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append([int(fd), os.readlink(f"/proc/self/fd/{fd}")])
        except FileNotFoundError:
            pass  # the listing's own descriptor, closed by now
    notify_ready({"fds": fds})
    signal.pause()


def thread_names() -> list[str]:
    """Every thread of this process as the kernel names it (ZeroMQ's threads are not Python's)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # ended meanwhile
    return sorted(names)


def report_ahead(args: dict, env: dict) -> None:
    """Say which threads ran at entry; with ``take``, take the context and run a task with start_early
    (saying on which thread it ran) before becoming ready; then wait to be stopped."""
    info = {"at_entry": thread_names(), "python_threads": sorted(t.name for t in threading.enumerate())}
    if args.get("take"):
        ctx = new_context()
        info["ran_on"] = start_early(lambda: threading.current_thread().name).result()
        info["context_threads"] = thread_names()
    notify_ready(info)
    signal.pause()


def exit_with(args: dict, env: dict) -> None:
    """Become ready (unless ``silent``), then exit with ``code``."""
    if not args.get("silent"):
        notify_ready({"pid": os.getpid()})
    raise SystemExit(args.get("code", 0))


def wait_for_signal(args: dict, env: dict) -> None:
    """Become ready, then wait; the default dispositions decide how a signal ends it."""
    notify_ready({"pid": os.getpid()})
    while True:
        signal.pause()


def report_args_size(args: dict, env: dict) -> None:
    """Says, when ready, how long its args are once packed (a long spawn request arrives whole)."""
    notify_ready({"bytes": len(pack(args)), "last": args["names"][-1]})


_prepared: list = []


def report_prepared(args: dict, env: dict) -> None:
    """Says, when ready, what its ``before_spawn`` had left in the launcher before this child was forked."""
    notify_ready({"prepared": list(_prepared)})


def _prepare(args: dict) -> bool:
    if args.get("fail_to_prepare"):
        raise RuntimeError("the child will do it itself")
    _prepared.append(args["mark"])
    return True


report_prepared.before_spawn = _prepare


def spec(child_id: str, restart: str = "permanent", shutdown="default", **args) -> dict:
    """The child spec of a :func:`serve` worker with these ``args`` (default shutdown: 2000 ms)."""
    return {"id": child_id, "start": ["workers:serve", args], "restart": restart,
            "shutdown": 2000 if shutdown == "default" else shutdown}
