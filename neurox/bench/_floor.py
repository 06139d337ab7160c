"""The floor: the least a 1-2-3-2-1 diamond of processes can do per sample (forward only).

The same processes as a network (forked by the same launcher), each joining its inputs by tick,
summing them and computing ``tanh(acc @ W)`` -- exactly what ``shared/reference/diamond.py`` does.
The benchmarks run it beside the real network in the same run, so their ratio is meaningful.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

import msgpack
import numpy as np
import zmq

from ..runtime import LauncherClient, ipc_endpoint, make_socket, notify_ready, start_launcher

FLOOR_TARGET = "neurox.bench._floor:run_floor_node"


def _inbox(run_dir: str, layer: int, index: int) -> str:
    return ipc_endpoint(run_dir, f"floor{layer}_{index}")


def run_floor_node(args: dict, env: dict) -> None:
    shape, layer, index, width, run_dir = args["shape"], args["layer"], args["index"], args["width"], args["run_dir"]
    ctx = zmq.Context()
    pull = make_socket(ctx, zmq.PULL, bind=_inbox(run_dir, layer, index))
    if layer + 1 < len(shape):
        outs = [make_socket(ctx, zmq.PUSH, connect=_inbox(run_dir, layer + 1, j)) for j in range(shape[layer + 1])]
    else:
        outs = [make_socket(ctx, zmq.PUSH, connect=ipc_endpoint(run_dir, "floor_out"))]
    fan_in = 1 if layer == 0 else shape[layer - 1]
    pending: dict = {}
    weights = np.random.rand(width, width).astype(np.float32) * 0.1
    notify_ready({})
    while True:
        tick, data = msgpack.unpackb(pull.recv())
        if tick < 0:
            for sock in outs:
                sock.send(msgpack.packb([tick, b""]))
            return
        v = np.frombuffer(data, dtype=np.float32).reshape(-1, width)
        acc = pending.get(tick)
        acc = v.copy() if acc is None else acc + v
        count = pending.get(("c", tick), 0) + 1
        if count < fan_in:
            pending[tick] = acc
            pending[("c", tick)] = count
            continue
        pending.pop(tick, None)
        pending.pop(("c", tick), None)
        y = np.tanh(acc @ weights)
        frame = msgpack.packb([tick, y.tobytes()])
        for sock in outs:
            sock.send(frame)


class FloorDiamond:
    """Start the floor processes; :meth:`throughput` and :meth:`latencies` drive them."""

    def __init__(self, shape=(1, 2, 3, 2, 1), width: int = 16):
        self.shape, self.width = list(shape), width
        self.run_dir = tempfile.mkdtemp(prefix="nx-floor-", dir="/tmp")
        self.launcher = start_launcher(os.path.join(self.run_dir, "launcher.sock"), ("neurox.bench._floor",))
        self.client = LauncherClient(os.path.join(self.run_dir, "launcher.sock"))
        self.ctx = zmq.Context()
        self.out = make_socket(self.ctx, zmq.PULL, bind=ipc_endpoint(self.run_dir, "floor_out"), hwm=100000)
        for layer, count in enumerate(self.shape):
            for index in range(count):
                self.client.spawn(FLOOR_TARGET, {"shape": self.shape, "layer": layer, "index": index,
                                                 "width": width, "run_dir": self.run_dir}, {"name": "nx:floor"})
        ready = 0
        while ready < sum(self.shape):
            ready += sum(1 for n in self.client.events(10.0) if n["ev"] == "ready")
        self.inp = make_socket(self.ctx, zmq.PUSH, connect=_inbox(self.run_dir, 0, 0), hwm=100000)
        self.x = np.random.rand(1, width).astype(np.float32).tobytes()
        self.tick = 0

    def throughput(self, samples: int, window: int = 64) -> float:
        done = sent = 0
        started = time.perf_counter()
        while done < samples:
            while sent < samples and sent - done < window:
                self.inp.send(msgpack.packb([self.tick + sent, self.x]))
                sent += 1
            self.out.recv()
            done += 1
        self.tick += samples
        return samples / (time.perf_counter() - started)

    def latencies(self, samples: int) -> np.ndarray:
        out = []
        for _ in range(samples):
            started = time.perf_counter()
            self.inp.send(msgpack.packb([self.tick, self.x]))
            self.out.recv()
            out.append(time.perf_counter() - started)
            self.tick += 1
        return np.array(out)

    def close(self) -> None:
        self.inp.send(msgpack.packb([-1, b""]))
        self.client.close()  # the launcher kills what is left of this connection's children
        self.launcher.terminate()
        self.launcher.wait(10)
        self.inp.close(linger=0)
        self.out.close(linger=0)
        self.ctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)
