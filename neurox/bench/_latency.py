"""MessengerIn -> MessengerOut round trips on an idle network, beside the floor diamond's.

Both sides are driven by a bare socket, one request at a time: the floor by a PUSH and a PULL, the
network by a DEALER speaking MessengerIn's protocol (an empty delimiter frame, then the request map;
docs/protocol.md, "MessengerIn"). What is timed is the network, not a client library: neurox's
reliable ``Client`` adds its own bookkeeping (a monitor socket, a poller, resend timers) to each
request, which the floor's bare client does not have.

Beside the round trips, the CPU each side spends per request (every process this command started,
every thread, over the timed requests: ``_cpu``): on a machine with fewer cores than
processes the round trip is bound by it, so it says where a ratio comes from.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np
import zmq

from ..ext import PRELOAD, digits, messenger_children
from ..neuron import Network, load_topology
from ..runtime import make_socket, pack, unpack_map
from ._cpu import children_cpu, cpu_per_request
from ._floor import FloorDiamond

WARM_UP = 200
"""Requests sent before the timed ones, on each side."""
REPLY_TIMEOUT_MS = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests (default: %(default)s)")


def run(args: argparse.Namespace) -> dict:
    floor = FloorDiamond()
    try:
        floor.latencies(WARM_UP)
        before = children_cpu()
        floor_us = floor.latencies(args.requests) * 1e6
        floor_cpu = cpu_per_request(before, children_cpu(), args.requests)
    finally:
        floor.close()
    vectors = [vector.tolist() for vector in digits().features]
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(load_topology(), data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            ctx = zmq.Context()
            sock = make_socket(ctx, zmq.DEALER, connect=network.messenger_in, linger_ms=0)
            try:
                ask = _asker(sock, vectors)
                for i in range(WARM_UP):
                    ask(i)
                before = children_cpu()
                us = np.array([ask(WARM_UP + i) for i in range(args.requests)]) * 1e6
                cpu = cpu_per_request(before, children_cpu(), args.requests)
            finally:
                sock.close(linger=0)
                ctx.term()
    p50, floor_p50 = float(np.percentile(us, 50)), float(np.percentile(floor_us, 50))
    return {"p50_us": round(p50), "p99_us": round(float(np.percentile(us, 99))), "floor_p50_us": round(floor_p50),
            "floor_p99_us": round(float(np.percentile(floor_us, 99))), "p50_ratio": round(p50 / floor_p50, 3),
            "requests": args.requests, "cpu_us_per_request": round(sum(cpu.values())),
            "floor_cpu_us_per_request": round(sum(floor_cpu.values())),
            "cpu_us_per_request_by_process": {name: round(us) for name, us in sorted(cpu.items())}}


def _asker(sock: zmq.Socket, vectors: list) -> Callable[[int], float]:
    """``ask(i)``: request ``i`` (the i-th vector, round the data set) and its answer; the seconds it took."""
    def ask(i: int) -> float:
        body = pack({"message_hash_id": i, "vector": vectors[i % len(vectors)]})
        started = time.perf_counter()
        sock.send_multipart([b"", body])
        if not sock.poll(REPLY_TIMEOUT_MS):
            raise RuntimeError(f"no answer to request {i} within {REPLY_TIMEOUT_MS} ms")
        reply = unpack_map(sock.recv_multipart()[-1])
        took = time.perf_counter() - started
        if not reply.get("ok") or reply.get("message_hash_id") != i:
            raise RuntimeError(f"request {i} failed: {reply}")
        return took
    return ask
