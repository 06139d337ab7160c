"""MessengerIn: the real-time front door at the start node. Every request gets exactly one reply.

Clients send a request map with a ``message_hash_id`` (REQ, or DEALER with an empty delimiter frame)
to a ROUTER. MessengerIn validates it, pushes it into the first layer as a packet, and remembers who
asked. The answer comes back through MessengerOut; MessengerIn replies to exactly that client, once.
If no answer comes within the request's timeout (a neuron died with the sample in flight), the client
gets an explicit ``timeout`` error and a late answer is dropped. See docs/protocol.md, "MessengerIn".

Every other origin's packets pass here too (:func:`~neurox.ext._front.feed_endpoint`): the
:class:`~neurox.ext._front.Front` scales them all alike before they reach the first layer.
"""
from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import zmq

from msgspec import UNSET

from ..neuron import messenger_in_endpoint
from ..runtime import Args, FrameError, Histogram, keep_heap, make_socket, op_arguments, pack, typed_ops
from ._api import DRAIN, InputExtension
from ._front import Front, feed_endpoint
from ._origin import is_return
from ._recall import listen_for_recall
from ._requests import RequestReader
from ._samples import InputError as BadRequest
from ._text import text_encoder

REQUEST_MAX_BYTES = 256 * 1024
DEFAULT_TIMEOUT_MS = 5000
DEFAULT_MAX_IN_FLIGHT = 1024
REPLY_CACHE = 4096
"""Final replies kept (packed: a few hundred bytes each) to answer a client that sends the same request again."""
MESSENGER_IN_TARGET = "neurox.ext._messenger_in:run_messenger_in"
FEED_BUNDLE = 64
"""Messages read from the feed at a time; the other origins' frames among them go on as one bundle."""
HEAP_KEPT = 32 << 20
"""Freed heap (bytes) MessengerIn keeps for its next bundle instead of giving it back to the kernel: the
scaling of a bundle makes temporaries of 128 KiB and more (``runtime.keep_heap``)."""
_NOBLOCK, _MORE = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK)
"""As plain ints: pyzmq's enum flags cost a Python-level ``Flag.__or__`` per frame (``send_multipart``)."""


class Education(Args):
    """The ``education`` op's argument: a dataset file (.csv or .npz), read in the network's units."""

    path: str


MESSENGER_IN_ARGS = op_arguments("messenger_in", {"education": Education})


@dataclass(slots=True)
class Waiting:
    envelope: list[bytes]
    message_hash_id: object
    deadline: float
    key: tuple
    arrived: float


def request_key(envelope: list[bytes], message_id) -> tuple:
    """Who asked what: the connection's identity (given by the ROUTER, so no client can forge another's)
    and the client's own message_hash_id. Two clients may use the same ids; one client may repeat one."""
    return envelope[0], type(message_id).__name__, message_id


class MessengerIn(InputExtension):
    target = MESSENGER_IN_TARGET
    direct = True  # the one origin that pushes into the first layer itself
    returns_drain = FEED_BUNDLE

    def __init__(self, settings: dict, env: dict):
        keep_heap(HEAP_KEPT)
        super().__init__(settings, env)
        end = self.topology.layers[-1].neurons[0]
        end_settings = self.topology.settings_of(end)
        self.classes = int(end_settings["units"]) if end_settings["activation"] == "softmax" else None
        self.outputs = int(end_settings["units"])
        self.reader = RequestReader(self.width, self.classes, self.outputs, text_encoder(self.topology),
                                    REQUEST_MAX_BYTES)
        self.names = self.topology.output.get("labels")
        """The classes' names, for a reply's ``probabilities``."""
        self.timeout_s = settings.get("timeout_ms", DEFAULT_TIMEOUT_MS) / 1000.0
        self.max_in_flight = int(settings.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT))
        self.endpoint = messenger_in_endpoint(self.run_dir)
        self.front = make_socket(self.ctx, zmq.ROUTER, bind=self.endpoint)
        for extra in settings.get("bind", []):
            self.front.bind(extra)
        self.watch(self.front, self._on_requests, drain=DRAIN, multipart=True)
        self.scaling = Front(self.topology, self.data_dir)
        self.handlers.update(typed_ops(MESSENGER_IN_ARGS, {"scaling": lambda r: self.scaling.state(),
                                                           "education": lambda r: self.scaling.lesson(r.path)}))
        # The other origins' packets come on the PULL of this origin's own answers: every socket polled costs
        # MessengerIn a few system calls on every wake-up (``_on_returns`` tells the two apart).
        self.origin.returns.bind(feed_endpoint(self.run_dir))
        listen_for_recall(self, self.scaling.recall)  # awake replay: the hippocampus's memory, pushed here
        self.waiting: dict[int, Waiting] = {}
        self.packet_of: dict[tuple, int] = {}
        """request_key -> the packet computing it, while in flight."""
        self.replies: OrderedDict[tuple, bytes] = OrderedDict()
        """request_key -> its final reply, for a repeat (bounded: the oldest go first)."""
        self.latency = Histogram()
        """Seconds from a request's arrival to its answer's reply, per answered request."""
        self.deadlines: list[tuple[float, int]] = []
        self.counters.update(requests=0, replied=0, errors=0, timeouts=0, busy=0, late=0, unroutable=0,
                             forwarded=0, feed_dropped=0, repeats_answered=0, repeats_in_flight=0)

    def ready_info(self) -> dict:
        return {"kind": self.kind, "endpoint": self.endpoint}

    def metrics(self) -> dict:
        return {**super().metrics(), **self.scaling.counters, **self.scaling.recall.metrics(),
                "in_flight": len(self.waiting), "request_latency": self.latency.to_dict()}

    def tick(self) -> float | None:
        now = time.monotonic()
        self._expire(now)
        flush_in = self.scaling.tick(now)
        return min(flush_in, self.deadlines[0][0] - now) if self.deadlines else flush_in

    def _on_returns(self, messages: list[bytes]) -> None:
        """What came on the return socket: answers to this origin's requests first, then the other origins'
        packets (and anything else, which the feed's checks refuse)."""
        answers, others = [], []
        for message in messages:
            (answers if is_return(message) else others).append(message)
        if answers:
            super()._on_returns(answers)
        if others:
            self._on_feed(others)

    def _on_feed(self, frames: list[bytes]) -> None:
        """Other origins' packets: scaled, then on into the first layer in one bundle (their answers go to them)."""
        bundle, learnt, refused = self.scaling.forward(frames)
        for exc in refused:
            if isinstance(exc, FrameError):
                self.bad.note(exc.kind, exc.detail)
            else:
                self.scaling.counters["non_finite"] += exc.error == "non_finite"
                self.reject(exc.error, f"a packet from another origin: {exc.detail}")
        if bundle is not None:
            self.count("forwarded" if self.origin.forward(bundle, learnt) else "feed_dropped", len(frames) - len(refused))

    def _on_requests(self, requests: list[list[bytes]]) -> None:
        for frames in requests:
            self._on_request(frames)

    def _on_request(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return
        envelope, body, arrived = frames[:-1], frames[-1], time.monotonic()
        self.counters["requests"] += 1
        ask = None
        try:
            ask = self.reader.read(body)
            key = request_key(envelope, ask.message_id)
            if self._repeat(key, envelope):
                return
            timeout_ms = self.timeout_s * 1000 if ask.timeout_ms is UNSET else ask.timeout_ms
            if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool) or not 0 < timeout_ms <= 600_000:
                raise BadRequest("bad_input", "'timeout_ms' must be a number of milliseconds in (0, 600000]")
            if len(self.waiting) >= self.max_in_flight:
                raise BadRequest("busy", f"{len(self.waiting)} requests in flight; try again shortly")
            row, targets, units = self.scaling.prepare(ask.row, ask.targets, ask.learn)  # refused ones teach nothing
            try:
                packet = self.submit(row, targets, block=False, tag=ask.message_id, learn=ask.learn, meta=units)
            except zmq.Again:
                raise BadRequest("busy", "the start of the network is not taking requests right now") from None
        except BadRequest as exc:
            self.count("busy" if exc.error == "busy" else "errors")
            if exc.error == "non_finite":
                self.scaling.counters["non_finite"] += 1
            if exc.error in ("malformed", "oversized", "wrong_type"):
                self.bad.note(exc.error, exc.detail)
            message_id = exc.message_id if ask is None else ask.message_id  # the reader's RequestError names it
            self._reply(envelope, {"message_hash_id": message_id, "ok": False, "error": exc.error,
                                   "detail": exc.detail})
            return
        deadline = arrived + timeout_ms / 1000.0
        self.waiting[packet] = Waiting(envelope, ask.message_id, deadline, key, arrived)
        self.packet_of[key] = packet
        heapq.heappush(self.deadlines, (deadline, packet))

    def _repeat(self, key: tuple, envelope: list[bytes]) -> bool:
        """A request seen before is answered from the cache, or left to the computation under way."""
        cached = self.replies.get(key)
        if cached is not None:
            self.count("repeats_answered")
            self._send(envelope, cached)
            return True
        if key in self.packet_of:
            self.count("repeats_in_flight")
            return True
        return False

    def on_result(self, result: dict) -> None:
        waiting = self._settle(result.get("packet"))
        if waiting is None:
            self.count("late")
            return
        output = np.frombuffer(result["output"], dtype="<f4").tolist()
        reply = {"message_hash_id": waiting.message_hash_id, "ok": True, "output": output, "loss": result.get("loss")}
        if "label" in result:
            reply["label"] = result["label"][0]
        if "text" in result:
            reply["text"] = result["text"][0]
        if self.classes is not None and self.names and len(self.names) == len(output):
            reply["probabilities"] = dict(zip(map(str, self.names), output))
        self.counters["replied"] += 1
        body = pack(reply)
        self._send(waiting.envelope, body)
        self.replies[waiting.key] = body
        if len(self.replies) > REPLY_CACHE:
            self.replies.popitem(last=False)
        self.latency.observe(time.monotonic() - waiting.arrived)

    def _settle(self, packet) -> Waiting | None:
        waiting = self.waiting.pop(packet, None)
        if waiting is not None:
            del self.packet_of[waiting.key]
        return waiting

    def _expire(self, now: float) -> None:
        """Requests past their deadline get an explicit timeout error."""
        while self.deadlines and self.deadlines[0][0] <= now:
            _, packet = heapq.heappop(self.deadlines)
            waiting = self._settle(packet)
            if waiting is None:
                continue  # answered in time
            self.count("timeouts")
            self._reply(waiting.envelope, {"message_hash_id": waiting.message_hash_id, "ok": False,
                                           "error": "timeout", "detail": "no answer in time; a neuron may "
                                           "have died with the request in flight"})

    def _reply(self, envelope: list[bytes], reply: dict) -> None:
        self._send(envelope, pack(reply))

    def _send(self, envelope: list[bytes], body: bytes) -> None:
        send = self.front.send
        try:
            for part in envelope:  # the ROUTER refuses a message at its first frame (unroutable, or full)
                send(part, _MORE)
            send(body, _NOBLOCK)
        except zmq.ZMQError:
            self.count("unroutable")

    def close(self) -> None:
        """Polite stop: whoever still waits gets an explicit error before the door closes."""
        for waiting in self.waiting.values():
            self._reply(waiting.envelope, {"message_hash_id": waiting.message_hash_id, "ok": False,
                                           "error": "shutdown", "detail": "the network is stopping"})
        self.waiting.clear()
        self.packet_of.clear()
        self.scaling.close()
        super().close()


run_messenger_in = MessengerIn.main
