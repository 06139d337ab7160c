"""MessengerIn: the real-time front door at the start node. Every request gets exactly one reply.

Clients send a request map with a ``message_hash_id`` (REQ, or DEALER with an empty delimiter frame)
to a ROUTER. MessengerIn validates it, pushes it into the first layer as a packet, and remembers who
asked. The answer comes back through MessengerOut; MessengerIn replies to exactly that client, once.
If no answer comes within the request's timeout (a neuron died with the sample in flight), the client
gets an explicit ``timeout`` error and a late answer is dropped. See docs/protocol.md, "MessengerIn".
"""
from __future__ import annotations

import heapq
import os
import signal
import time
from dataclasses import dataclass

import numpy as np
import zmq

from ..neuron import Topology, messenger_in_endpoint, topology_path
from ..runtime import (EXIT_SHUTDOWN, FrameError, make_socket, notify_ready, pack, serve_one, unpack_map)
from ._origin import Origin

REQUEST_MAX_BYTES = 256 * 1024
DEFAULT_TIMEOUT_MS = 5000
DEFAULT_MAX_IN_FLIGHT = 1024
TEXT_ENCODINGS = ("utf8",)
MESSENGER_IN_TARGET = "neurox.ext._messenger_in:run_messenger_in"


class BadRequest(Exception):
    """A request that is answered with an error at once (``error`` is the atom)."""

    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass
class Waiting:
    envelope: list[bytes]
    message_hash_id: object
    deadline: float


def encode_text(text: str, encoding: str, width: int) -> np.ndarray:
    """Text as an input vector: ``utf8`` bytes scaled to [0, 1], zero-padded or cut to ``width``."""
    if encoding not in TEXT_ENCODINGS:
        raise BadRequest("bad_input", f"unknown text encoding {encoding!r}; known: {', '.join(TEXT_ENCODINGS)}")
    raw = np.frombuffer(text.encode("utf-8")[:width], dtype=np.uint8).astype(np.float32) / 255.0
    return np.pad(raw, (0, width - raw.size))


def parse_request(request: dict, width: int, classes: int | None, outputs: int) -> tuple:
    """(message_hash_id, input row, targets or None, learn) from a request map, or BadRequest."""
    message_id = request.get("message_hash_id")
    if not isinstance(message_id, (str, int)) or isinstance(message_id, bool):
        raise BadRequest("bad_input", "a request needs a 'message_hash_id' (string or integer)")
    if "vector" in request:
        vector = request["vector"]
        if isinstance(vector, (bytes, bytearray)):
            if len(vector) % 4:
                raise BadRequest("bad_input", "a binary vector is float32 bytes (a multiple of 4)")
            row = np.frombuffer(vector, dtype="<f4")
        elif isinstance(vector, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector):
            row = np.asarray(vector, dtype=np.float32)
        else:
            raise BadRequest("bad_input", "'vector' must be a list of numbers or float32 bytes")
        if row.size != width:
            raise BadRequest("bad_input", f"wrong vector length: expected {width} values, got {row.size}")
        if not np.all(np.isfinite(row)):
            raise BadRequest("bad_input", "the vector holds NaN or infinity")
    elif "text" in request:
        if not isinstance(request["text"], str):
            raise BadRequest("bad_input", "'text' must be a string")
        row = encode_text(request["text"], request.get("encoding", "utf8"), width)
    else:
        raise BadRequest("bad_input", "a request needs 'vector' or 'text'")
    target = request.get("target")
    if target is not None:
        if classes is not None:
            if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < classes:
                raise BadRequest("bad_input", f"'target' must be a class index 0..{classes - 1}")
        elif not (isinstance(target, list) and len(target) == outputs):
            raise BadRequest("bad_input", f"'target' must be a list of {outputs} numbers")
    learn = bool(request.get("learn", target is not None))
    if learn and target is None:
        raise BadRequest("bad_input", "'learn' needs a 'target'")
    return message_id, row.reshape(1, width), ([target] if target is not None else None), learn


class MessengerIn:
    def __init__(self, args: dict, env: dict):
        self.topology = Topology.load(topology_path(args["data_dir"]))
        end = self.topology.layers[-1].neurons[0]
        settings = self.topology.settings_of(end)
        self.classes = int(settings["units"]) if settings["activation"] == "softmax" else None
        self.outputs = int(settings["units"])
        self.width = self.topology.input_width
        self.timeout_s = args.get("timeout_ms", DEFAULT_TIMEOUT_MS) / 1000.0
        self.max_in_flight = int(args.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT))
        self.ctx = zmq.Context()
        self.endpoint = messenger_in_endpoint(env["run_dir"])
        self.front = make_socket(self.ctx, zmq.ROUTER, bind=self.endpoint)
        for extra in args.get("bind", []):
            self.front.bind(extra)
        self.control = make_socket(self.ctx, zmq.ROUTER, bind=env["control"])
        self.origin = Origin(self.ctx, env["run_dir"], self.topology, "messenger_in")
        self.waiting: dict[int, Waiting] = {}
        self.deadlines: list[tuple[float, int]] = []
        self.counters = {"requests": 0, "replied": 0, "errors": 0, "timeouts": 0, "busy": 0, "late": 0,
                         "unroutable": 0}
        self.stop_requested = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_):
        self.stop_requested = True

    def serve(self) -> None:
        handlers = {"ping": lambda r: "pong", "metrics": lambda r: self.metrics(),
                    "status": lambda r: {"pid": os.getpid(), "width": self.width, **self.metrics()}}
        poller = zmq.Poller()
        for sock in (self.front, self.origin.returns, self.control):
            poller.register(sock, zmq.POLLIN)
        notify_ready({"endpoint": self.endpoint})
        while not self.stop_requested:
            timeout = 200 if not self.deadlines else int((self.deadlines[0][0] - time.monotonic()) * 1000) + 1
            for sock, _ in poller.poll(max(0, min(timeout, 200))):
                if sock is self.front:
                    self._on_request(self.front.recv_multipart())
                elif sock is self.control:
                    serve_one(self.control, handlers)
                else:
                    for result in self.origin.receive():
                        self._on_result(result)
            self._expire(time.monotonic())
        self._stop()

    def metrics(self) -> dict:
        return {**self.counters, "in_flight": len(self.waiting)}

    def _on_request(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        envelope, body = frames[:-1], frames[-1]
        self.counters["requests"] += 1
        message_id = None
        try:
            try:
                request = unpack_map(body, REQUEST_MAX_BYTES)
            except FrameError as exc:
                raise BadRequest("malformed" if exc.kind != "oversized" else "oversized", exc.detail) from None
            message_id = request.get("message_hash_id")
            message_id, row, targets, learn = parse_request(request, self.width, self.classes, self.outputs)
            timeout_ms = request.get("timeout_ms", self.timeout_s * 1000)
            if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool) or not 0 < timeout_ms <= 600_000:
                raise BadRequest("bad_input", "'timeout_ms' must be a number of milliseconds in (0, 600000]")
            if len(self.waiting) >= self.max_in_flight:
                raise BadRequest("busy", f"{len(self.waiting)} requests in flight; try again shortly")
            try:
                packet = self.origin.send(row, targets, learn, block=False)
            except zmq.Again:
                raise BadRequest("busy", "the start of the network is not taking requests right now") from None
        except BadRequest as exc:
            self.counters["busy" if exc.error == "busy" else "errors"] += 1
            self._reply(envelope, {"message_hash_id": message_id, "ok": False, "error": exc.error,
                                   "detail": exc.detail})
            return
        deadline = time.monotonic() + timeout_ms / 1000.0
        self.waiting[packet] = Waiting(envelope, message_id, deadline)
        heapq.heappush(self.deadlines, (deadline, packet))

    def _on_result(self, result: dict) -> None:
        waiting = self.waiting.pop(result.get("packet"), None)
        if waiting is None:
            self.counters["late"] += 1
            return
        reply = {"message_hash_id": waiting.message_hash_id, "ok": True,
                 "output": np.frombuffer(result["output"], dtype="<f4").tolist(), "loss": result.get("loss")}
        for key in ("label", "text"):
            if key in result:
                reply[key] = result[key][0]
        self.counters["replied"] += 1
        self._reply(waiting.envelope, reply)

    def _expire(self, now: float) -> None:
        """Requests past their deadline get an explicit timeout error."""
        while self.deadlines and self.deadlines[0][0] <= now:
            _, packet = heapq.heappop(self.deadlines)
            waiting = self.waiting.pop(packet, None)
            if waiting is None:
                continue  # answered in time
            self.counters["timeouts"] += 1
            self._reply(waiting.envelope, {"message_hash_id": waiting.message_hash_id, "ok": False,
                                           "error": "timeout", "detail": "no answer in time; a neuron may "
                                           "have died with the request in flight"})

    def _reply(self, envelope: list[bytes], reply: dict) -> None:
        try:
            self.front.send_multipart([*envelope, pack(reply)], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters["unroutable"] += 1

    def _stop(self) -> None:
        """Polite stop: whoever still waits gets an explicit error before the door closes."""
        for waiting in self.waiting.values():
            self._reply(waiting.envelope, {"message_hash_id": waiting.message_hash_id, "ok": False,
                                           "error": "shutdown", "detail": "the network is stopping"})
        self.waiting.clear()
        self.deadlines.clear()
        for sock in (self.front, self.control):
            sock.close()
        self.origin.close()
        self.ctx.term()
        raise SystemExit(EXIT_SHUTDOWN)


def run_messenger_in(args: dict, env: dict) -> None:
    MessengerIn(args, env).serve()
