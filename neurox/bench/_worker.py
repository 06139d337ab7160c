"""The neuron-like worker that ``neurox bench restart`` kills: the neuron stack imported, a LevelDB
open in its directory, a ROUTER bound, every request echoed.

Two twins do the same steps in the same order: :func:`run_worker`, forked by the launcher (which
has imported numpy, pyzmq, msgpack and plyvel already), and :data:`EXEC_SOURCE`, a fresh interpreter
as an exec-style supervisor (systemd, supervisord, Circus) would start it. Both start the database's
open first, on a thread, and set up the socket meanwhile: LevelDB's open mostly waits for the disk
(it writes and syncs a new manifest), and meanwhile the ZeroMQ context starts, the socket is bound,
and a client's reconnection and first request arrive. The first answer still comes only once the
database is open. The forked twin takes the thread and the context its spare started ahead of need
(:func:`~neurox.runtime._fork.start_early`, :func:`~neurox.runtime._fork.new_context`); the exec'd
one has no spare and starts both itself.
"""
from __future__ import annotations

import plyvel
import zmq

from ..runtime import make_socket, new_context, notify_ready, start_early

TARGET = "neurox.bench._worker:run_worker"
EXEC_SOURCE = """
import sys, numpy, zmq, msgpack, plyvel
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(1) as pool:
    opening = pool.submit(plyvel.DB, sys.argv[2], create_if_missing=True)
    ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.bind(sys.argv[1])
    db = opening.result()
while True:
    s.send_multipart(s.recv_multipart())
"""
"""The exec-style twin, run as ``python -c EXEC_SOURCE ENDPOINT DB_DIR``."""


def run_worker(args: dict, env: dict) -> None:
    """Launcher target: ``args`` has ``endpoint`` (to bind) and ``db`` (the LevelDB directory)."""
    opening = start_early(plyvel.DB, args["db"], create_if_missing=True)
    sock = make_socket(new_context(), zmq.ROUTER, bind=args["endpoint"])
    db = opening.result()
    notify_ready({})
    try:
        while True:
            frames = sock.recv_multipart()
            try:
                sock.send_multipart(frames)
            except zmq.ZMQError:
                pass  # the asker went away (ROUTER_MANDATORY): nobody to answer
    finally:
        db.close()
