"""SIGKILL -> replacement answering, launcher fork vs exec

The worker (``neurox.bench._worker``) has imported numpy, pyzmq, msgpack and plyvel, holds a
LevelDB in a temporary directory and a bound ROUTER; as a neuron's, a replacement's database is
remade behind its start (the dead run's is only discarded under the default policy ``replace``). A one_for_one supervisor restarts it through
the launcher; each kill is timed from ``os.kill(SIGKILL)`` until a client's request is answered by the
replacement. The same run then times the exec-style restart an exec-based supervisor pays (notice the
death with ``waitpid``, start ``python -c`` with the same imports, the same database and the same
socket) and reports the ratio. Kills are spaced by ``--interval-ms`` so that each restart starts from a
settled host, as a crash in a running network does. As in a network, the socket lives in the tree's
run directory (in memory where the host has it: ``run_base``) and the database in a data directory
on the disk.

Each forked restart is also cut into stages by the moments the replacement reports (see ``_worker``):
``start`` (the kill until the replacement runs its target: the victim's death, the launcher's
reaction, the hand-off to a spare), ``bind``, ``ready`` (said to the launcher), ``reach`` (until the
client's request arrives: its reconnection) and ``answer`` (until the client has the answer); their
p50/p90/p99 say where the tail is.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

from ..runtime import ipc_endpoint, run_base, unpack_map
from ._worker import EXEC_SOURCE, TARGET
from ..supervisor_tree import SupervisorClient, Tree, root_args

RESEND_MS = 2
"""A request sent in the instant the old connection is dying is lost; ask again after this long."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kills", type=int, default=200, help="kills of the supervised worker (default: %(default)s)")
    parser.add_argument("--exec-kills", type=int, default=20,
                        help="kills of the exec-style worker (default: %(default)s)")
    parser.add_argument("--interval-ms", type=float, default=50.0,
                        help="pause after each answered restart before the next kill (default: %(default)s)")


class Pinger:
    """A DEALER that asks until someone answers: the moment a replacement serves.

    IMMEDIATE queues a request only on a live connection, a 1 ms reconnect interval without back-off
    finds the replacement's socket at once, and each round's requests carry the round's number so that
    a late answer to an earlier round is never taken for this one.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
        self.sock.connect(endpoint)
        self.round = 0

    def until_answered(self, timeout: float = 30.0) -> list[bytes]:
        """Ask until answered; the answer's frames after the token."""
        self.round += 1
        token = str(self.round).encode()
        deadline = time.monotonic() + timeout
        while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            if not self.sock.poll(left_ms, zmq.POLLOUT):
                continue  # no connection yet
            try:
                self.sock.send(token, zmq.NOBLOCK)
            except zmq.Again:
                continue  # the connection went between the poll and the send
            while self.sock.poll(RESEND_MS):
                frames = self.sock.recv_multipart()
                if frames[0] == token:
                    return frames[1:]
        raise TimeoutError(f"no answer within {timeout} s")

    def close(self) -> None:
        self.sock.close()


def _milliseconds(seconds: list[float]) -> np.ndarray:
    return np.array(seconds) * 1000.0


STAGES = ("start", "bind", "ready", "reach", "answer")
"""The parts of a restart, in order (see the module docstring); the moments that end each."""
_ENDS = ("entered", "bound", "ready", "asked")


def stages_of(killed: float, answered: float, moments: dict) -> list[float]:
    """The seconds of each of :data:`STAGES` of one restart, from the kill, the answer and the replacement's moments."""
    ends = [killed, *(moments[name] for name in _ENDS), answered]
    return [b - a for a, b in zip(ends, ends[1:])]


def stage_table(stages: np.ndarray) -> dict:
    """p50/p90/p99 in ms of each stage (``stages``: one row of seconds per restart)."""
    ms = stages * 1000.0
    return {name: {q: round(float(np.percentile(ms[:, i], int(q[1:]))), 2) for q in ("p50", "p90", "p99")}
            for i, name in enumerate(STAGES)}


def supervised_restarts(kills: int, interval_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Kill the launcher-forked worker ``kills`` times: the kill -> answer times in ms, and the seconds of
    each stage of each restart (one row a restart)."""
    ctx = zmq.Context.instance()
    with (tempfile.TemporaryDirectory(prefix="nx-restart-", dir="/tmp") as data,
          tempfile.TemporaryDirectory(prefix="nx-restart-", dir=run_base()) as run):
        endpoint = ipc_endpoint(run, "worker")
        child = {"id": "worker", "start": [TARGET, {"endpoint": endpoint, "db": os.path.join(data, "db")}],
                 "shutdown": "brutal_kill"}
        root = root_args([child], intensity=kills + 10, period=1.0)
        with Tree(root, run_dir=run, preload=("neurox.bench._worker",)) as tree:
            supervisor = SupervisorClient(tree.control)
            pinger = Pinger(ctx, endpoint)
            try:
                pinger.until_answered()
                times, stages = [], []
                for _ in range(kills):
                    time.sleep(interval_s)
                    pid = supervisor.which_children()[0]["pid"]
                    killed = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                    (moments,) = pinger.until_answered()
                    answered = time.monotonic()
                    times.append(answered - killed)
                    stages.append(stages_of(killed, answered, unpack_map(moments)))
            finally:
                pinger.close()
                supervisor.close()
    return _milliseconds(times), np.array(stages)


def exec_restarts(kills: int, interval_s: float) -> np.ndarray:
    """What an exec-based supervisor pays for the same worker; the kill -> answer times in ms."""
    ctx = zmq.Context.instance()
    with (tempfile.TemporaryDirectory(prefix="nx-exec-", dir="/tmp") as data,
          tempfile.TemporaryDirectory(prefix="nx-exec-", dir=run_base()) as run):
        endpoint = ipc_endpoint(run, "worker")
        command = [sys.executable, "-c", EXEC_SOURCE, endpoint, os.path.join(data, "db")]
        proc = subprocess.Popen(command)
        pinger = Pinger(ctx, endpoint)
        try:
            pinger.until_answered()
            times = []
            for _ in range(kills):
                time.sleep(interval_s)
                started = time.perf_counter()
                proc.kill()
                proc.wait()  # what an exec-style supervisor notices (SIGCHLD), then it execs a new one
                proc = subprocess.Popen([*command, "crash"])
                pinger.until_answered()
                times.append(time.perf_counter() - started)
        finally:
            proc.kill()
            proc.wait()
            pinger.close()
    return _milliseconds(times)


def run(args: argparse.Namespace) -> dict:
    interval_s = args.interval_ms / 1000.0
    forked, stages = supervised_restarts(args.kills, interval_s)
    print(f"launcher fork: p50 {np.percentile(forked, 50):.1f} ms, p99 {np.percentile(forked, 99):.1f} ms "
          f"over {len(forked)} kills", flush=True)
    table = stage_table(stages)
    print("  stages, p50/p99 ms: " + ", ".join(f"{name} {row['p50']}/{row['p99']}" for name, row in table.items()),
          flush=True)
    execd = exec_restarts(args.exec_kills, interval_s)
    print(f"exec of a fresh interpreter: p50 {np.percentile(execd, 50):.1f} ms over {len(execd)} kills", flush=True)
    p50 = float(np.percentile(forked, 50))
    exec_p50 = float(np.percentile(execd, 50))
    return {"restart_p50_ms": round(p50, 2), "restart_p99_ms": round(float(np.percentile(forked, 99)), 2),
            "restart_max_ms": round(float(forked.max()), 2), "exec_restart_p50_ms": round(exec_p50, 2),
            "speedup_p50": round(exec_p50 / p50, 1), "kills": len(forked), "exec_kills": len(execd),
            "interval_ms": args.interval_ms, "stages_ms": table}
