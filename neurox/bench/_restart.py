"""SIGKILL -> a replacement answering: the launcher's fork beside an exec of a fresh interpreter"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import plyvel
import zmq

from ..runtime import ipc_endpoint, make_socket, notify_ready
from ..supervisor_tree import SupervisorClient, Tree, root_args

WORKER_TARGET = "neurox.bench._restart:run_worker"
EXEC_WORKER = """
import sys, numpy, zmq, msgpack, plyvel
db = plyvel.DB(sys.argv[2], create_if_missing=True)
ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.bind(sys.argv[1])
while True:
    s.send_multipart(s.recv_multipart())
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kills", type=int, default=200, help="kills of the supervised worker (default: %(default)s)")
    parser.add_argument("--exec-kills", type=int, default=20, help="kills of the exec-style worker (default: %(default)s)")


def run_worker(args: dict, env: dict) -> None:
    """A neuron-like worker: the neuron stack imported (by the launcher), a LevelDB open, a socket bound."""
    db = plyvel.DB(args["db"], create_if_missing=True)
    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.ROUTER, bind=args["endpoint"])
    notify_ready({})
    try:
        while True:
            sock.send_multipart(sock.recv_multipart())
    finally:
        db.close()


class Pinger:
    """A DEALER that keeps asking until someone answers: the moment a replacement serves."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on live connections: no ping lost in a dead pipe
        self.sock.setsockopt(zmq.RECONNECT_IVL, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)  # no back-off: retry every millisecond
        self.sock.connect(endpoint)
        self.serial = 0

    def until_answered(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.serial += 1
            token = str(self.serial).encode()
            try:
                self.sock.send(token, zmq.NOBLOCK)
            except zmq.Again:
                time.sleep(0.0005)
                continue
            while self.sock.poll(1):
                if self.sock.recv() == token:
                    return
        raise TimeoutError("no answer")

    def close(self) -> None:
        self.sock.close()


def supervised_restarts(kills: int) -> np.ndarray:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="nx-restart-", dir="/tmp") as work:
        endpoint = ipc_endpoint(work, "worker")
        child = {"id": "worker", "start": [WORKER_TARGET, {"endpoint": endpoint, "db": os.path.join(work, "db")}],
                 "shutdown": "brutal_kill"}
        with Tree(root_args([child], intensity=kills + 10, period=1.0), run_dir=os.path.join(work, "run"),
                  preload=("neurox.bench._restart",)) as tree:
            root = SupervisorClient(tree.control)
            pinger = Pinger(ctx, endpoint)
            pinger.until_answered()
            times = []
            for _ in range(kills):
                pid = root.which_children()[0]["pid"]
                started = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                pinger.until_answered()
                times.append(time.perf_counter() - started)
                time.sleep(0.002)
            pinger.close()
            root.close()
    return np.array(times) * 1000


def exec_restarts(kills: int) -> np.ndarray:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="nx-exec-", dir="/tmp") as work:
        endpoint = ipc_endpoint(work, "worker")
        db = os.path.join(work, "db")
        proc = subprocess.Popen([sys.executable, "-c", EXEC_WORKER, endpoint, db])
        pinger = Pinger(ctx, endpoint)
        try:
            pinger.until_answered()
            times = []
            for _ in range(kills):
                started = time.perf_counter()
                proc.kill()
                proc.wait()  # what an exec-style supervisor notices (SIGCHLD), then it execs a new one
                proc = subprocess.Popen([sys.executable, "-c", EXEC_WORKER, endpoint, db])
                pinger.until_answered()
                times.append(time.perf_counter() - started)
        finally:
            proc.kill()
            proc.wait()
            pinger.close()
    return np.array(times) * 1000


def run(args: argparse.Namespace) -> dict:
    forked = supervised_restarts(args.kills)
    print(f"launcher fork: p50 {np.percentile(forked, 50):.1f} ms, p99 {np.percentile(forked, 99):.1f} ms "
          f"over {len(forked)} kills", flush=True)
    execd = exec_restarts(args.exec_kills)
    print(f"exec of a fresh interpreter: p50 {np.percentile(execd, 50):.1f} ms over {len(execd)} kills", flush=True)
    return {"restart_p50_ms": round(float(np.percentile(forked, 50)), 2),
            "restart_p99_ms": round(float(np.percentile(forked, 99)), 2),
            "restart_max_ms": round(float(forked.max()), 2),
            "exec_restart_p50_ms": round(float(np.percentile(execd, 50)), 2),
            "speedup_p50": round(float(np.percentile(execd, 50) / np.percentile(forked, 50)), 1),
            "kills": len(forked), "exec_kills": len(execd)}
