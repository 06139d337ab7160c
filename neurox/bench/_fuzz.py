"""malformed, truncated, oversized and wrong-typed frames to every socket kind of a running network

For each socket kind -- a neuron's inbox, a neuron's control socket, a supervisor's control socket,
MessengerIn, the event bus, and the webhook input's HTTP endpoint (bad request bodies) -- it sends
``--frames`` bad frames, waits until the target has counted
them, and reports how many were counted, how fast, and whether anything died or grew. The baseline,
from the same run, is the rate of valid ``ping`` requests on a neuron's control socket: a bad frame
should cost no more than a good one.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from urllib.parse import urlsplit

import msgpack
import psutil
import zmq

from ..ext import PRELOAD, Client, digits, network_children
from ..neuron import Network, encode_forward, inbox_endpoint, load_topology, neuron_control
from ..runtime import ControlClient, ipc_endpoint, pack
from ..supervisor_tree import SupervisorClient, control_endpoint

TARGET_NEURON = "L2.n1"
WEBHOOK = {"name": "hook", "module": "webhook", "port": 0, "max_bytes": 4096}
"""The webhook input the fuzzed diamond carries (on a free port, bodies up to 4 KiB)."""
OVERSIZED_EVERY = 2000
"""One frame in this many of the "oversized or scalar" kind is 5 MiB (over every socket's limit)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=100_000, help="bad frames per socket kind (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)


def bad_frames(rng: random.Random, valid: bytes, count: int) -> Iterator[bytes]:
    """A mix of the kinds of bad frame a careless or hostile peer sends, built from a ``valid`` one."""
    for i in range(count):
        kind = i % 6
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 64))                       # garbage
        elif kind == 1:
            yield valid[:rng.randint(0, len(valid) - 1)]                  # truncated
        elif kind == 2:
            yield pack([rng.choice([None, 1.5, "x", [], {}]) for _ in range(rng.randint(0, 8))])  # wrong types
        elif kind == 3:
            yield pack({"op": rng.choice([1, None, "nope", "ping" * 50]), "id": rng.random()})  # bad requests
        elif kind == 4:
            yield msgpack.packb([0, "L1.n0", [1, 2], [1], b"\x00" * 64, [True], [b""]])  # inconsistent shapes
        else:
            yield b"\x00" * (5 * 1024 * 1024) if i % OVERSIZED_EVERY == 5 else pack(rng.random())  # oversized, a scalar


def bad_bodies(rng: random.Random, count: int) -> Iterator[bytes]:
    """Request bodies a webhook must refuse (400, or 413 before reading), from a valid sample's JSON."""
    valid = json.dumps({"vector": digits().features[0].tolist(), "target": 3}).encode()
    for i in range(count):
        kind = i % 6
        if kind == 0:
            yield rng.randbytes(rng.randint(1, 64))                                          # garbage, not UTF-8
        elif kind == 1:
            yield valid[:rng.randint(1, len(valid) - 1)]                                      # truncated JSON
        elif kind == 2:
            yield json.dumps(rng.choice([[1, 2], "x", 1.5, None, {"vector": "x"}, {"samples": 3}])).encode()  # wrong types
        elif kind == 3:
            yield json.dumps({"vector": [0.5] * rng.randint(1, 63)}).encode()                 # wrong shape
        elif kind == 4:
            yield json.dumps({"samples": []}).encode()                                        # an empty batch
        else:
            yield b"[" * 5000 if i % OVERSIZED_EVERY == 5 else json.dumps({"text": 7}).encode()  # oversized, wrong type


def valid_forward() -> bytes:
    """A well-formed forward frame, the template the truncated frames are cut from."""
    return encode_forward("L1.n0", [1], [digits().features[:1, :16]], [False], [pack({})])


class Targets:
    """The socket kinds of a running diamond, and how each counts the bad frames it received."""

    def __init__(self, network: Network, ctx: zmq.Context, rng: random.Random):
        self.network = network
        self.neuron = ControlClient(ctx, neuron_control(network.run_dir, network.topology, TARGET_NEURON))
        self.root = SupervisorClient(network.control)
        self.messenger = ControlClient(ctx, network.control.replace("root.ctl", "root.messenger_in.ctl"))
        self.bus = ControlClient(ctx, network.tree.events_control)
        self.hook = ControlClient(ctx, control_endpoint(network.run_dir, f"root/{WEBHOOK['name']}"))
        valid = valid_forward()
        zmq_frames = partial(bad_frames, rng, valid)
        self.kinds: dict[str, tuple[Callable[[int], int], Callable[[], int]]] = {
            "inbox": (partial(send_all, ctx, zmq.PUSH, inbox_endpoint(network.run_dir, TARGET_NEURON), zmq_frames),
                      lambda: self._by_kind_total(lambda k: not k.startswith("control:"))),
            "neuron_control": (partial(send_all, ctx, zmq.DEALER, neuron_control(network.run_dir, network.topology,
                                                                                  TARGET_NEURON), zmq_frames),
                               lambda: self._by_kind_total(lambda k: k.startswith("control:"))),
            "supervisor_control": (partial(send_all, ctx, zmq.DEALER, network.control, zmq_frames),
                                   lambda: self.root.status()["bad_frames"]),
            "messenger_in": (partial(send_all, ctx, zmq.DEALER, network.messenger_in, zmq_frames),
                             lambda: self.messenger.call("metrics")["errors"]),
            "event_bus": (partial(send_all, ctx, zmq.PUSH, ipc_endpoint(network.run_dir, "events.sink"), zmq_frames),
                          lambda: self.bus.call("status")["bad_frames"]),
            "webhook": (partial(post_all, self.hook.call("status")["url"], partial(bad_bodies, rng)),
                        lambda: self.hook.call("metrics")["bad_frames"]),
        }

    def _by_kind_total(self, wanted: Callable[[str], bool]) -> int:
        by_kind = self.neuron.call("metrics")["bad_frames_by_kind"]
        return sum(n for kind, n in by_kind.items() if wanted(kind))

    def close(self) -> None:
        for client in (self.neuron, self.root, self.messenger, self.bus, self.hook):
            client.close()


def send_all(ctx: zmq.Context, kind: int, endpoint: str, frames: Callable[[int], Iterator[bytes]], count: int) -> int:
    """Send ``count`` frames (a DEALER's with the empty delimiter, reading the error replies as they come)."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 120_000)  # a slow reader still gets every frame queued here
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(endpoint)
    sent = 0
    try:
        for frame in frames(count):
            sock.send_multipart([b"", frame] if kind == zmq.DEALER else [frame])
            sent += 1
            if kind == zmq.DEALER:
                while sock.poll(0):
                    sock.recv_multipart()  # nothing piles up on this side
    finally:
        sock.close()
    return sent


def post_all(url: str, bodies: Callable[[int], Iterator[bytes]], count: int) -> int:
    """POST ``count`` bad bodies to a webhook over one keep-alive connection, opening a new one whenever
    the server closes it (after a 413 it does not read the body, so it cannot read another request)."""
    parts = urlsplit(url)
    conn, sent = None, 0
    try:
        for body in bodies(count):
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            try:
                conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (ConnectionError, http.client.HTTPException):  # closed on us mid-request: counted all the same
                conn.close()
                conn = None
            sent += 1
    finally:
        if conn is not None:
            conn.close()
    return sent


def await_counted(count: Callable[[], int], at_least: int, timeout_s: float) -> int:
    """The target's count once it reaches ``at_least`` or stops moving for 2 s (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    last, still_since = count(), time.monotonic()
    while last < at_least and time.monotonic() < deadline and time.monotonic() - still_since < 2.0:
        time.sleep(0.1)
        now = count()
        if now != last:
            last, still_since = now, time.monotonic()
    return last


def ping_rate(client: ControlClient, seconds: float = 2.0) -> float:
    """Valid requests per second on a control socket, one at a time: the baseline."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        client.call("ping")
        done += 1
    return done / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict:
    ctx = zmq.Context.instance()
    rng = random.Random(args.seed)
    topology = load_topology()
    topology.extensions = [dict(WEBHOOK)]
    with tempfile.TemporaryDirectory() as data_dir:
        with Network(topology, data_dir, extensions=network_children(topology, data_dir), preload=PRELOAD) as network:
            targets = Targets(network, ctx, rng)
            try:
                processes = psutil.Process(network.tree.launcher_proc.pid).children()
                pids = {p.pid for p in processes}
                rss_before = sum(p.memory_info().rss for p in processes)
                baseline = ping_rate(targets.neuron)
                per_kind = {}
                for name, (send, count) in targets.kinds.items():
                    before = count()
                    started = time.perf_counter()
                    sent = send(args.frames)
                    counted = await_counted(count, before + sent, timeout_s=120) - before
                    seconds = time.perf_counter() - started
                    per_kind[name] = {"sent": sent, "counted": counted, "frames_per_s": round(sent / seconds)}
                    print(f"{name}: {per_kind[name]}", flush=True)
                client = Client(network.messenger_in, ctx)
                reply = client.ask(vector=digits().features[0].tolist(), timeout=30)
                client.close()
                alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
                rss_after = sum(p.memory_info().rss for p in alive)
                now_pids = {p.pid for p in psutil.Process(network.tree.launcher_proc.pid).children()}
            finally:
                targets.close()
    slowest = min(k["frames_per_s"] for k in per_kind.values())
    return {"frames_per_kind": args.frames, "kinds": per_kind, "processes": len(processes),
            "died": len(processes) - len(alive), "replaced": len(pids - now_pids),
            "still_answers": bool(reply.get("ok")), "rss_growth_mib": round((rss_after - rss_before) / 2 ** 20, 1),
            "baseline_valid_pings_per_s": round(baseline), "slowest_bad_frames_per_s": slowest,
            "ratio": round(slowest / baseline, 2)}
