"""MessengerOut: the end node's output extension. It scores the answers and publishes them.

The end neuron pushes its output frames here, after it has returned each packet's answer to the
packet's origin itself (``neuron._returns``: one hop, off MessengerOut's path). MessengerOut decodes
the outputs as the end neuron does (``answers_of``: the topology's ``[output]`` table says how: arg-max
label and its name, or the raw vector), keeps the prequential score of what was learnt from, and
publishes every answer on the outputs bus (``outputs.pub``, topic ``result``) for the output
extensions. It never answers clients: each origin keeps the books of who is waiting. The bus is an
XPUB, so MessengerOut knows whether anyone subscribes to the answers (:class:`Listeners`) and, while
no one does, spends nothing on publishing them (a PUB would drop them after their encoding).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import zmq

from ..neuron import OUTPUT, OUTPUT_FRAME, answers_of, decode_frame, inbox_endpoint, rows_block
from ..runtime import EVENT_HWM, FrameError, make_socket, pack
from ._api import DRAIN, Extension, outputs_endpoint

RECENT_SCORES = 1000
"""The answers over which MessengerOut's rolling accuracy is computed."""
MESSENGER_OUT_TARGET = "neurox.ext._messenger_out:run_messenger_out"
TOPIC = b"result"
_EVENTS, _POLLIN, _NOBLOCK, _MORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.SNDMORE)
"""As plain ints: pyzmq's enum flags cost a Python-level ``Flag.__or__`` a use."""


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
        self.counters.update(outputs=0)
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
        """Each packet's answer scored and, if anyone listens, on the outputs bus."""
        _, _src, packets, rows, data, metas, losses = decode_frame(frame, (OUTPUT_FRAME,))
        answers = answers_of(packets, rows, rows_block(data, rows, self.width), metas, losses, self.activation,
                             self.topology.output)
        self.counters["outputs"] += len(answers)
        for result, own, meta in answers:
            self._score(result.get("label"), meta.get("targets"))
            if listened:
                self._publish(result, own, meta)

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


run_messenger_out = MessengerOut.main
