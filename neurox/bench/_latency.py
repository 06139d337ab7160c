"""MessengerIn -> MessengerOut round trips on an idle network, beside two floors' (``_floor``).

Every side is driven by a bare socket, one request at a time: the floor diamond by a PUSH and a PULL
(six message hops), the route floor -- the diamond with bare processes in MessengerIn's and
MessengerOut's places, eight hops as the network has -- and the network by a DEALER speaking
MessengerIn's protocol (an empty delimiter frame, then the request map; docs/protocol.md,
"MessengerIn"). ``p50_ratio`` is against the diamond alone, ``route_p50_ratio`` against the route: what
the network's hops cost beyond bare ones. What is timed is the network, not a client library: neurox's
reliable ``Client`` adds its own bookkeeping (a monitor socket, a poller, resend timers) to each
request, which the floors' bare clients do not have.

Beside the round trips, the CPU each side spends per request (every process this command started,
every thread, over the timed requests: ``_cpu``): on a machine with fewer cores than
processes the round trip is bound by it, so it says where a ratio comes from.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    vectors = [vector.tolist() for vector in digits().features]
    floor = FloorDiamond()
    try:
        floor_us, floor_cpu = _timed(lambda _request: floor.round_trip(), args.requests)
    finally:
        floor.close()
    route = FloorDiamond(route=True)
    try:
        with _dealer(route.front) as sock:
            route_us, route_cpu = _timed(_asker(sock, vectors), args.requests)
    finally:
        route.close()
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(load_topology(), data_dir, extensions=messenger_children(data_dir), preload=PRELOAD) as network:
            with _dealer(network.messenger_in) as sock:
                us, cpu = _timed(_asker(sock, vectors), args.requests)
    p50 = float(np.percentile(us, 50))
    floor_p50, route_p50 = float(np.percentile(floor_us, 50)), float(np.percentile(route_us, 50))
    return {"p50_us": round(p50), "p99_us": round(float(np.percentile(us, 99))), "floor_p50_us": round(floor_p50),
            "floor_p99_us": round(float(np.percentile(floor_us, 99))), "p50_ratio": round(p50 / floor_p50, 3),
            "route_floor_p50_us": round(route_p50), "route_floor_p99_us": round(float(np.percentile(route_us, 99))),
            "route_p50_ratio": round(p50 / route_p50, 3), "requests": args.requests,
            "cpu_us_per_request": round(sum(cpu.values())),
            "floor_cpu_us_per_request": round(sum(floor_cpu.values())),
            "route_floor_cpu_us_per_request": round(sum(route_cpu.values())),
            "cpu_us_per_request_by_process": {name: round(us) for name, us in sorted(cpu.items())}}


def _timed(ask: Callable[[int], float], requests: int) -> tuple[np.ndarray, dict[str, float]]:
    """``requests`` round trips (microseconds) after the warm-up, and the CPU each process spent a request."""
    for i in range(WARM_UP):
        ask(i)
    before = children_cpu()
    us = np.array([ask(WARM_UP + i) for i in range(requests)]) * 1e6
    return us, cpu_per_request(before, children_cpu(), requests)


@contextmanager
def _dealer(endpoint: str) -> Iterator[zmq.Socket]:
    ctx = zmq.Context()
    sock = make_socket(ctx, zmq.DEALER, connect=endpoint, linger_ms=0)
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


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
