"""The floor: the least a 1-2-3-2-1 diamond of processes can do per sample (forward only).

The same processes as a network (forked by the same launcher), each joining its inputs by tick,
summing them and computing ``tanh(acc @ W)`` -- exactly what ``shared/reference/diamond.py`` does.
The benchmarks run it beside the real network in the same run, so their ratio is meaningful.

The diamond alone is driven by a bare PUSH and PULL: six message hops a request. With ``route``
it is reached as the network is, with two more bare processes in the places of MessengerIn and
MessengerOut: a client's DEALER to a ROUTER, into the diamond, from its last layer back to the ROUTER
(and to a sink in MessengerOut's place, off the answer's path, as the end neuron sends MessengerOut
every output), back to the client: eight hops, the network's route with nothing done on the way.
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
ROUTE_FRONT_TARGET = "neurox.bench._floor:run_route_front"
ROUTE_SINK_TARGET = "neurox.bench._floor:run_route_sink"


def _inbox(run_dir: str, layer: int, index: int) -> str:
    return ipc_endpoint(run_dir, f"floor{layer}_{index}")


def run_floor_node(args: dict, env: dict) -> None:
    shape, layer, index, width, run_dir = args["shape"], args["layer"], args["index"], args["width"], args["run_dir"]
    ctx = zmq.Context()
    pull = make_socket(ctx, zmq.PULL, bind=_inbox(run_dir, layer, index))
    if layer + 1 < len(shape):
        outs = [make_socket(ctx, zmq.PUSH, connect=_inbox(run_dir, layer + 1, j)) for j in range(shape[layer + 1])]
    else:
        outs = [make_socket(ctx, zmq.PUSH, connect=ipc_endpoint(run_dir, end)) for end in args["ends"]]
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


def run_route_front(args: dict, env: dict) -> None:
    """MessengerIn's place, bare: a request map (``message_hash_id``, ``vector``) from a client's DEALER
    goes into the diamond as one float32 frame; its answer, from the diamond's last layer, goes back to
    that client as ``{"ok": true, "message_hash_id": ..., "output": [...]}``."""
    run_dir = args["run_dir"]
    ctx = zmq.Context()
    clients = make_socket(ctx, zmq.ROUTER, bind=ipc_endpoint(run_dir, "route_front"))
    answers = make_socket(ctx, zmq.PULL, bind=ipc_endpoint(run_dir, "route_answers"))
    first = make_socket(ctx, zmq.PUSH, connect=_inbox(run_dir, 0, 0))
    poller = zmq.Poller()
    poller.register(clients, zmq.POLLIN)
    poller.register(answers, zmq.POLLIN)
    waiting: dict = {}
    tick = 0
    notify_ready({})
    while True:
        for sock, _ in poller.poll():
            if sock is clients:
                identity, _, body = clients.recv_multipart()
                request = msgpack.unpackb(body)
                waiting[tick] = (identity, request["message_hash_id"])
                first.send(msgpack.packb([tick, np.asarray(request["vector"], dtype=np.float32).tobytes()]))
                tick += 1
            else:
                done, data = msgpack.unpackb(answers.recv())
                if done < 0:  # the stop tick, through the diamond
                    continue
                identity, message_id = waiting.pop(done)
                output = np.frombuffer(data, dtype=np.float32).tolist()
                clients.send_multipart([identity, b"", msgpack.packb({"ok": True, "message_hash_id": message_id,
                                                                     "output": output})])


def run_route_sink(args: dict, env: dict) -> None:
    """MessengerOut's place, bare: takes every output of the diamond's last layer, and does nothing."""
    last = make_socket(zmq.Context(), zmq.PULL, bind=ipc_endpoint(args["run_dir"], "floor_out"))
    notify_ready({})
    while True:
        last.recv()


class FloorDiamond:
    """Start the floor processes; :meth:`throughput` and :meth:`latencies` drive them. With ``route``, the
    diamond is reached through the route's front (:attr:`front`, a ROUTER speaking the request map of
    MessengerIn), which its last layer answers, as the network is."""

    def __init__(self, shape=(1, 2, 3, 2, 1), width: int = 16, route: bool = False):
        self.shape, self.width = list(shape), width
        self.run_dir = tempfile.mkdtemp(prefix="nx-floor-", dir="/tmp")
        self.launcher = start_launcher(os.path.join(self.run_dir, "launcher.sock"), ("neurox.bench._floor",))
        self.client = LauncherClient(os.path.join(self.run_dir, "launcher.sock"))
        self.ctx = zmq.Context()
        self.front = ipc_endpoint(self.run_dir, "route_front") if route else None
        self.out = None if route else make_socket(self.ctx, zmq.PULL, bind=ipc_endpoint(self.run_dir, "floor_out"),
                                                  hwm=100000)
        ends = ["route_answers", "floor_out"] if route else ["floor_out"]
        children = [(FLOOR_TARGET, {"shape": self.shape, "layer": layer, "index": index, "width": width,
                                    "run_dir": self.run_dir, "ends": ends}) for layer, count in enumerate(self.shape)
                    for index in range(count)]
        if route:
            children += [(ROUTE_FRONT_TARGET, {"run_dir": self.run_dir}), (ROUTE_SINK_TARGET, {"run_dir": self.run_dir})]
        for target, args in children:
            self.client.spawn(target, args, {"name": "nx:floor"})
        ready = 0
        while ready < len(children):
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

    def round_trip(self) -> float:
        """One sample through the diamond alone and back; the seconds it took."""
        started = time.perf_counter()
        self.inp.send(msgpack.packb([self.tick, self.x]))
        self.out.recv()
        self.tick += 1
        return time.perf_counter() - started

    def close(self) -> None:
        self.inp.send(msgpack.packb([-1, b""]))
        self.client.close()  # the launcher kills what is left of this connection's children
        self.launcher.terminate()
        self.launcher.wait(10)
        self.inp.close(linger=0)
        if self.out is not None:
            self.out.close(linger=0)
        self.ctx.term()
        shutil.rmtree(self.run_dir, ignore_errors=True)
