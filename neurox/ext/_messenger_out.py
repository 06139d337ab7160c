"""MessengerOut: the end node's output extension. It decodes answers and returns each to its origin.

The end neuron pushes ``[2, packet, src, outputs, meta, loss]`` frames here. ``meta`` names the
origin's return endpoint (MessengerIn, or a stream); MessengerOut decodes the outputs as the topology's
``[output]`` table says (arg-max label and its name, or the raw vector) and pushes a result map to that
origin. It never answers clients itself: the origin keeps the books of who is still waiting.
"""
from __future__ import annotations

import os
import signal
import sys
from collections import OrderedDict

import numpy as np
import zmq

from ..neuron import OUTPUT, OUTPUT_FRAME, Topology, decode_frame, inbox_endpoint, split_rows, topology_path
from ..runtime import EXIT_SHUTDOWN, FrameError, make_socket, notify_ready, pack, serve_one, unpack_map

MAX_ORIGINS = 64
"""Return sockets kept open at once; the least recently used beyond this are closed."""
MESSENGER_OUT_TARGET = "neurox.ext._messenger_out:run_messenger_out"


def decode_outputs(outputs: np.ndarray, output_config: dict) -> dict:
    """The answer map for rows of end-node outputs: labels (and names) or plain vectors."""
    if output_config.get("decode", "label") == "label":
        labels = outputs.argmax(axis=1).tolist()
        answer = {"label": labels}
        names = output_config.get("labels")
        if names:
            answer["text"] = [names[i] if i < len(names) else str(i) for i in labels]
        return answer
    return {}


class MessengerOut:
    def __init__(self, args: dict, env: dict):
        topology = Topology.load(topology_path(args["data_dir"]))
        self.output_config = topology.output
        self.width = topology.width_of(topology.layers[-1].neurons[0])
        self.ctx = zmq.Context()
        self.inbox = make_socket(self.ctx, zmq.PULL, bind=inbox_endpoint(env["run_dir"], OUTPUT))
        self.control = make_socket(self.ctx, zmq.ROUTER, bind=env["control"])
        self.origins: OrderedDict[str, zmq.Socket] = OrderedDict()
        self.counters = {"outputs": 0, "returned": 0, "bad_frames": 0, "dropped_returns": 0}
        self.stop_requested = False
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_):
        self.stop_requested = True

    def serve(self) -> None:
        handlers = {"ping": lambda r: "pong", "metrics": lambda r: dict(self.counters),
                    "status": lambda r: {"pid": os.getpid(), "origins": list(self.origins), **self.counters}}
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        notify_ready({"width": self.width})
        while not self.stop_requested:
            for sock, _ in poller.poll(200):
                if sock is self.control:
                    serve_one(self.control, handlers)
                    continue
                frame = self.inbox.recv()
                try:
                    self._on_output(frame)
                except FrameError as exc:
                    self.counters["bad_frames"] += 1
                    if self.counters["bad_frames"] == 1:
                        print(f"messenger_out: dropped a bad frame ({exc})", file=sys.stderr, flush=True)
        for sock in (self.inbox, self.control, *self.origins.values()):
            sock.close()
        self.ctx.term()
        raise SystemExit(EXIT_SHUTDOWN)

    def _on_output(self, frame: bytes) -> None:
        _, _src, packets, rows, data, metas, losses = decode_frame(frame, (OUTPUT_FRAME,))
        by_origin: dict[str, list[dict]] = {}
        for packet, outputs, meta, loss in zip(packets, split_rows(data, rows, self.width), metas, losses):
            origin = unpack_map(meta).get("origin") if isinstance(meta, bytes) else None
            if not isinstance(origin, str):
                raise FrameError("bad_meta", "meta has no origin endpoint")
            self.counters["outputs"] += 1
            by_origin.setdefault(origin, []).append(
                {"packet": packet, "rows": outputs.shape[0], "output": outputs.tobytes(), "width": self.width,
                 "loss": loss, **decode_outputs(outputs, self.output_config)})
        for origin, results in by_origin.items():
            try:
                self._origin(origin).send(pack(results), zmq.NOBLOCK)
                self.counters["returned"] += len(results)
            except zmq.Again:
                self.counters["dropped_returns"] += len(results)

    def _origin(self, endpoint: str) -> zmq.Socket:
        sock = self.origins.pop(endpoint, None)
        if sock is None:
            sock = make_socket(self.ctx, zmq.PUSH, connect=endpoint)
            while len(self.origins) >= MAX_ORIGINS:
                self.origins.popitem(last=False)[1].close(linger=0)
        self.origins[endpoint] = sock
        return sock


def run_messenger_out(args: dict, env: dict) -> None:
    MessengerOut(args, env).serve()
