"""MessengerOut: the end node's output extension. It decodes answers and returns each to its origin.

The end neuron pushes output frames here. Each packet's ``meta`` names the origin's return endpoint
(MessengerIn, a stream, any input extension); MessengerOut decodes the outputs as the topology's
``[output]`` table says (arg-max label and its name, or the raw vector), pushes the results to their
origins, and publishes every answer on the outputs bus (``outputs.pub``, topic ``result``) for the
output extensions. It never answers clients itself: each origin keeps the books of who is waiting.
The bus is an XPUB, so MessengerOut knows whether anyone subscribes to the answers (:class:`Listeners`)
and, while no one does, spends nothing on publishing them (a PUB would drop them after their encoding).
"""
from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np
import zmq

from ..neuron import OUTPUT, OUTPUT_FRAME, decode_frame, inbox_endpoint, split_rows
from ..runtime import EVENT_HWM, FrameError, make_socket, pack, unpack_map
from ._api import DRAIN, Extension, outputs_endpoint
from ._front import to_user_units
from ._recall import forget_recalled

RECENT_SCORES = 1000
"""The answers over which MessengerOut's rolling accuracy is computed."""
MAX_ORIGINS = 64
"""Return sockets kept open at once; the least recently used beyond this are closed."""
MESSENGER_OUT_TARGET = "neurox.ext._messenger_out:run_messenger_out"
TOPIC = b"result"
_EVENTS, _POLLIN, _NOBLOCK, _MORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.SNDMORE)
"""As plain ints: pyzmq's enum flags cost a Python-level ``Flag.__or__`` a use."""


def decode_outputs(outputs: np.ndarray, output_config: dict) -> dict:
    """The answer map for rows of end-node outputs: labels (and names), or nothing beyond the vectors."""
    if output_config.get("decode", "label") != "label":
        return {}
    labels = outputs.argmax(axis=1).tolist()
    answer = {"label": labels}
    names = output_config.get("labels")
    if names:
        answer["text"] = [names[i] if i < len(names) else str(i) for i in labels]
    return answer


class Listeners:
    """Whether anyone subscribes to ``topic`` on an XPUB: libzmq passes up each subscribed prefix once
    (``b"\\x01" + prefix``, its first subscriber's) and its unsubscription once (``b"\\x00" + prefix``,
    when its last subscriber leaves or goes away)."""

    def __init__(self, sock: zmq.Socket, topic: bytes):
        self.sock, self.topic = sock, topic
        self.prefixes: set[bytes] = set()
        self.wanted = False

    def check(self) -> bool:
        """Take in the (un)subscriptions waiting; whether anyone listens now."""
        while self.sock.get(_EVENTS) & _POLLIN:
            self.take(self.sock.recv(_NOBLOCK))
        return self.wanted

    def take(self, message: bytes) -> None:
        """One (un)subscription message (anything else an XPUB may pass up is not one, and changes nothing)."""
        if message[:1] == b"\x01":
            self.prefixes.add(message[1:])
        elif message[:1] == b"\x00":
            self.prefixes.discard(message[1:])
        self.wanted = any(self.topic.startswith(prefix) for prefix in self.prefixes)


class MessengerOut(Extension):
    kind = "output"
    target = MESSENGER_OUT_TARGET

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.width = self.topology.width_of(self.topology.layers[-1].neurons[0])
        self.activation = self.topology.settings_of(self.topology.layers[-1].neurons[0])["activation"]
        self.inbox = make_socket(self.ctx, zmq.PULL, bind=inbox_endpoint(self.run_dir, OUTPUT))
        self.publish = make_socket(self.ctx, zmq.XPUB, bind=outputs_endpoint(self.run_dir), hwm=EVENT_HWM)
        self.listeners = Listeners(self.publish, TOPIC)
        self.origins: OrderedDict[str, zmq.Socket] = OrderedDict()
        self.counters.update(outputs=0, returned=0, dropped_returns=0)
        self.recent: deque[int] = deque(maxlen=RECENT_SCORES)
        self.watch(self.inbox, self._on_frames, drain=DRAIN)

    def ready_info(self) -> dict:
        return {"kind": self.kind, "width": self.width}

    def _on_frames(self, frames: list[bytes]) -> None:
        listened = self.listeners.check()
        for frame in frames:
            try:
                self._on_output(frame, listened)
            except FrameError as exc:
                self.bad.note(exc.kind, exc.detail)

    def _on_output(self, frame: bytes, listened: bool = True) -> None:
        """Each packet's answer back to its origin first (one message per origin: the origin's next packets
        wait for it), then scored and, if anyone listens, on the outputs bus."""
        _, _src, packets, rows, data, metas, losses = decode_frame(frame, (OUTPUT_FRAME,))
        by_origin: dict[str, list[dict]] = {}
        answered = []
        for packet, outputs, meta, loss in zip(packets, split_rows(data, rows, self.width), metas, losses):
            meta = unpack_map(meta) if isinstance(meta, bytes) else {}
            outputs, meta, loss = forget_recalled(outputs, meta, loss, self.activation)  # awake replay's rows
            outputs = to_user_units(outputs, meta)  # a regression answer in the user's units
            origin = meta.get("origin")
            result = {"packet": packet, "rows": outputs.shape[0], "output": outputs.tobytes(), "width": self.width,
                      "loss": loss, **decode_outputs(outputs, self.topology.output)}
            answered.append((result, outputs, meta))
            if isinstance(origin, str):
                by_origin.setdefault(origin, []).append(result)
            else:
                self.count("no_origin")
        for origin, results in by_origin.items():
            try:
                self._origin(origin).send(pack(results), _NOBLOCK)
                self.counters["returned"] += len(results)
            except zmq.Again:
                self.count("dropped_returns", len(results))
        self.counters["outputs"] += len(answered)
        for result, outputs, meta in answered:
            self._score(result.get("label"), meta.get("targets"))
            if listened:
                self._publish(result, outputs, meta)

    def _score(self, labels, targets) -> None:
        """Prequential accuracy of everything learnt from: answered before the network learnt from it."""
        if labels is None or not isinstance(targets, list) or len(targets) != len(labels):
            return
        self.recent.extend(int(label == target) for label, target in zip(labels, targets))

    def metrics(self) -> dict:
        accuracy = sum(self.recent) / len(self.recent) if self.recent else None
        return {**super().metrics(), "recent_accuracy": accuracy, "scored": len(self.recent)}

    def _publish(self, result: dict, outputs: np.ndarray, meta: dict) -> None:
        """The answer for the output extensions (``outputs``: its rows, float32), with what its origin said
        about the packet."""
        answer = {**result, "output": outputs.ravel().tolist()}
        meta = {**meta, "targets": meta.get("user_targets", meta.get("targets"))}  # regression: the user's units
        for key, name in (("tag", "message_hash_id"), ("source", "source"), ("targets", "targets")):
            if meta.get(key) is not None:
                answer[name] = meta[key]
        self.publish.send(TOPIC, _MORE)
        self.publish.send(pack(answer))

    def _origin(self, endpoint: str) -> zmq.Socket:
        sock = self.origins.pop(endpoint, None)
        if sock is None:
            sock = make_socket(self.ctx, zmq.PUSH, connect=endpoint)
            while len(self.origins) >= MAX_ORIGINS:
                self.origins.popitem(last=False)[1].close(linger=0)
        self.origins[endpoint] = sock
        return sock


run_messenger_out = MessengerOut.main
