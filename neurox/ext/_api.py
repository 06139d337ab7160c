"""The extension API: processes at the edges of a network that bring data in or take answers out.

An extension is a module with a class named ``Extension`` deriving from :class:`InputExtension` (it
turns outside data into vectors for the start node, optionally with targets to learn from) or
:class:`OutputExtension` (it takes every answer of the end node somewhere). Each runs as a supervised
worker under the network's root, started from a line in the topology file::

    [[extension]]
    name = "eye"                    # its id in the supervision tree
    module = "neurox.ext.eye"       # where its Extension class lives
    path = "/srv/images"            # anything else is passed to it as settings

The base classes give every extension a ZeroMQ context, a control socket (``ping``, ``status``,
``metrics``), counters, an event publisher, a polite stop on SIGTERM, and one poll loop that calls
back the sockets (or file descriptors) it :meth:`~Extension.watch`-es. See ``docs/extensions.md``.
"""
from __future__ import annotations

import importlib
import os
import signal
import time
from collections.abc import Callable

import numpy as np
import zmq

from ..neuron import Topology, topology_path
from ..runtime import (EXIT_SHUTDOWN, BadFrames, EventPublisher, ipc_endpoint, make_socket, notify_ready, serve_one,
                       unpack_map)
from ._origin import Origin

EXTENSION_TARGET = "neurox.ext._api:run_extension"


def outputs_endpoint(run_dir: str) -> str:
    """The PUB socket on which MessengerOut publishes every answer (topic ``result``)."""
    return ipc_endpoint(run_dir, "outputs.pub")


class Extension:
    """Base of every extension process."""

    kind = "extension"

    def __init__(self, settings: dict, env: dict):
        self.settings = settings
        self.env = env
        self.name = env["path"].rsplit("/", 1)[-1]
        self.data_dir = settings["data_dir"]
        self.run_dir = env["run_dir"]
        self.topology = Topology.load(topology_path(self.data_dir))
        self.ctx = zmq.Context()
        self.control = make_socket(self.ctx, zmq.ROUTER, bind=env["control"])
        self.events = EventPublisher(self.ctx, env.get("events"), env["path"])
        self.counters: dict[str, int] = {}
        self.bad = BadFrames(self.name)
        self.started_t = time.time()
        self.stop_requested = False
        self.handlers: dict[str, Callable[[dict], object]] = {
            "ping": lambda r: "pong", "metrics": lambda r: self.metrics(), "status": lambda r: self.status()}
        self._poller = zmq.Poller()
        self._callbacks: dict = {}
        self.watch(self.control, lambda: serve_one(self.control, self.handlers, self.bad))
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        self.watch(self._wake_r, lambda: os.read(self._wake_r, 512))

    def _on_term(self, *_):
        self.stop_requested = True

    def count(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def watch(self, sock, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever ``sock`` (a zmq socket or a file descriptor) is readable."""
        self._poller.register(sock, zmq.POLLIN)
        self._callbacks[sock] = callback

    def unwatch(self, sock) -> None:
        self._poller.unregister(sock)
        del self._callbacks[sock]

    def tick(self) -> float | None:
        """Periodic work between events; returns seconds until it wants to run again (None: no need)."""
        return None

    def metrics(self) -> dict:
        return {**self.counters, "bad_frames": self.bad.total, "bad_frames_by_kind": dict(self.bad.by_kind)}

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "pid": os.getpid(), "uptime_s": time.time() - self.started_t,
                **self.counters}

    def ready_info(self) -> dict:
        return {"kind": self.kind}

    def serve(self) -> None:
        notify_ready(self.ready_info())
        while not self.stop_requested:
            wait = self.tick()
            timeout_ms = 200 if wait is None else max(0, min(200, int(wait * 1000)))
            for sock, _ in self._poller.poll(timeout_ms):
                self._callbacks[sock]()
        self.close()
        raise SystemExit(EXIT_SHUTDOWN)

    def close(self) -> None:
        """Release everything; subclasses close their own sockets first, then call this."""
        self.control.close()
        self.events.close()
        self.ctx.term()


class InputExtension(Extension):
    """Brings outside data to the start node. Call :meth:`submit`; answers come to :meth:`on_result`."""

    kind = "input"

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.origin = Origin(self.ctx, self.run_dir, self.topology, self.name)
        self.watch(self.origin.returns, self._on_returns)

    @property
    def width(self) -> int:
        return self.topology.input_width

    def submit(self, rows: np.ndarray, targets: list | None = None, block: bool = False) -> int:
        """Send rows (each ``width`` values) into the network; with targets it learns from them too.

        Raises ``zmq.Again`` when the start node is not taking more (back-pressure) and ``block`` is False.
        """
        packet = self.origin.send(np.asarray(rows, dtype=np.float32).reshape(-1, self.width), targets,
                                  learn=targets is not None, block=block)
        self.count("submitted")
        return packet

    def _on_returns(self) -> None:
        for result in self.origin.receive():
            self.on_result(result)

    def on_result(self, result: dict) -> None:
        """An answer to one of this extension's packets (input-only extensions may ignore it)."""
        self.count("answered")

    def close(self) -> None:
        self.origin.close()
        super().close()


class OutputExtension(Extension):
    """Takes every answer of the end node somewhere: override :meth:`on_result`."""

    kind = "output"

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.results = make_socket(self.ctx, zmq.SUB, connect=outputs_endpoint(self.run_dir))
        self.results.setsockopt(zmq.SUBSCRIBE, b"result")
        self.watch(self.results, self._on_message)

    def _on_message(self) -> None:
        _, body = self.results.recv_multipart()
        self.count("received")
        self.on_result(unpack_map(body))

    def on_result(self, result: dict) -> None:
        """One answer: ``packet``, ``output`` (list of floats), ``label``/``text`` if decoded, ``loss``,
        and ``message_hash_id`` when it came through MessengerIn."""
        raise NotImplementedError

    def close(self) -> None:
        self.results.close()
        super().close()


def run_extension(args: dict, env: dict) -> None:
    """Process entry point: ``args`` holds ``module`` (with an ``Extension`` class) and its settings."""
    module = importlib.import_module(args["module"])
    extension_class = getattr(module, "Extension", None)
    if not (isinstance(extension_class, type) and issubclass(extension_class, Extension)):
        raise TypeError(f"{args['module']} has no Extension class deriving from InputExtension or OutputExtension")
    extension_class(args, env).serve()
