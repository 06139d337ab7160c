"""The neuron-like worker that ``neurox bench restart`` kills: the neuron stack imported, a LevelDB
in its directory, a ROUTER bound, every request echoed.

Two twins do the same steps in the same order: :func:`run_worker`, forked by the launcher (which
has imported numpy, pyzmq, msgpack and plyvel already), and :data:`EXEC_SOURCE`, a fresh interpreter
as an exec-style supervisor (systemd, supervisord, Circus) would start it. As a neuron does
(docs/neuron.md, "Death and replacement"), a first start opens its database before it answers (on a
thread, while the socket is bound: LevelDB's open mostly waits for the disk, which syncs a new
manifest), and a replacement of a crashed run (the supervisor's ``after: "crash"``; the exec'd twin's
third argument) answers at once: under policy ``replace`` the dead run's database is only discarded,
so it is removed and a new one made on a thread while the replacement serves. The forked twin takes
the thread and the context its spare started ahead of need (:func:`~neurox.runtime._fork.start_early`,
:func:`~neurox.runtime._fork.new_context`); the exec'd one has no spare and starts both itself.

The forked twin answers each request with one more frame: the moments (``time.monotonic``, the same
clock in every process of a host) it entered its target, had its socket bound, had said it was ready
and received its first request, so that the bench can say where a restart's time goes.
"""
from __future__ import annotations

import shutil
import time

import plyvel
import zmq

from ..runtime import make_socket, new_context, notify_ready, pack, start_early

TARGET = "neurox.bench._worker:run_worker"
EXEC_SOURCE = """
import shutil, sys, numpy, zmq, msgpack, plyvel
from concurrent.futures import ThreadPoolExecutor
def open_db(path, crashed):
    if crashed:
        shutil.rmtree(path, ignore_errors=True)
    return plyvel.DB(path, create_if_missing=True)
pool = ThreadPoolExecutor(1)
opening = pool.submit(open_db, sys.argv[2], sys.argv[3:] == ["crash"])
ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.bind(sys.argv[1])
if sys.argv[3:] != ["crash"]:
    db = opening.result()
while True:
    s.send_multipart(s.recv_multipart())
"""
"""The exec-style twin, run as ``python -c EXEC_SOURCE ENDPOINT DB_DIR [crash]``."""


def open_db(path: str, crashed: bool) -> plyvel.DB:
    """The worker's database; after a crash, the dead run's removed first (policy ``replace``)."""
    if crashed:
        shutil.rmtree(path, ignore_errors=True)
    return plyvel.DB(path, create_if_missing=True)


def run_worker(args: dict, env: dict) -> None:
    """Launcher target: ``args`` has ``endpoint`` (to bind) and ``db`` (the LevelDB directory)."""
    entered = time.monotonic()
    crashed = env.get("after") == "crash"
    opening = start_early(open_db, args["db"], crashed)
    sock = make_socket(new_context(), zmq.ROUTER, bind=args["endpoint"])
    bound = time.monotonic()
    if not crashed:
        opening.result()
    notify_ready({})
    ready = time.monotonic()
    frames = sock.recv_multipart()
    moments = pack({"entered": entered, "bound": bound, "ready": ready, "asked": time.monotonic()})
    try:
        while True:
            try:
                sock.send_multipart([*frames, moments])
            except zmq.ZMQError:
                pass  # the asker went away (ROUTER_MANDATORY): nobody to answer
            frames = sock.recv_multipart()
    finally:
        opening.result().close()
