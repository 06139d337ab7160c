"""The extension API: processes at the edges of a network that bring data in or take answers out.

An extension is a module with a class named ``Extension`` deriving from one of these bases, run as
a supervised worker under the network's root and started from a line in the topology file::

    [[extension]]
    name = "eye"                    # its id in the supervision tree
    module = "neurox.ext.eye"       # where its Extension class lives
    path = "/srv/images"            # anything else is a setting, checked against settings_schema

- :class:`~neurox.ext.SampleInput` (``_sample_input``, on top of this one) -- a source of samples (files,
  devices, HTTP): call ``offer`` from callbacks or from ``refill``; the base batches, paces (``window``,
  ``rate``), sends, scores the answers prequentially and counts what was lost.
- :class:`InputExtension` -- a bare origin at the start node: :meth:`~InputExtension.submit` packets and
  take their answers in :meth:`~InputExtension.on_result` (MessengerIn, which answers each request itself).
- :class:`OutputExtension` -- every answer of the end node, as MessengerOut publishes it: override
  :meth:`~OutputExtension.on_records` (one record per sample) or :meth:`~OutputExtension.on_result`.

MessengerIn is an InputExtension and MessengerOut an ``output`` Extension: the one fed by the end
neuron directly, which publishes what every OutputExtension consumes. Every extension gets a ZeroMQ
context, a control socket (``ping``, ``status``, ``metrics``), counters, rejected input counted by kind,
an event publisher, a polite stop on SIGTERM, and one poll loop that calls back the sockets (or file
descriptors) it :meth:`~Extension.watch`-es. See ``docs/extensions.md``.
"""
from __future__ import annotations

import importlib
import os
import signal
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import zmq

from ..neuron import Topology, topology_path
from ..runtime import BadFrames, FrameError, Process, ipc_endpoint, make_socket, unpack_map
from ._mixing import joined_width
from ._origin import Origin, results_of
from ._samples import InputError, sample_records
from ._settings import ExtensionError, Setting, configure

EXTENSION_TARGET = "neurox.ext._api:run_extension"
RECENT_REJECTS = 20
"""Rejected inputs kept, with their details, in an extension's ``status``."""
POLL_CAP_S = 0.2
DRAIN = 1000
"""Messages (answers, returns) an extension takes per wake-up before it lets its control socket in."""
BUILT_IN = {"eye": "neurox.ext.eye", "webhook": "neurox.ext.webhook", "stream": "neurox.ext.stream",
            "jsonl": "neurox.ext.jsonl", "http_post": "neurox.ext.http_post", "zmq_pub": "neurox.ext.zmq_pub",
            "telegram": "neurox.ext.telegram"}
"""The built-in extensions: a topology line may name one by its short name (``module = "eye"``)."""


def outputs_endpoint(run_dir: str) -> str:
    """The PUB socket on which MessengerOut publishes every answer (topic ``result``)."""
    return ipc_endpoint(run_dir, "outputs.pub")


class Extension(Process):
    """Base of every extension process: a callback module of the process behaviour (``runtime.Process``)
    whose constructor sets it up, whose watched sockets call back, and whose :meth:`tick` is its timer."""

    kind = "extension"
    target = EXTENSION_TARGET
    max_wait_s = POLL_CAP_S
    stop_signals = (signal.SIGTERM,)
    settings_schema: dict[str, Setting] = {}
    """Every setting a topology line may give this extension (see :class:`~neurox.ext.Setting`)."""

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        """A topology line's settings checked against :attr:`settings_schema`, with defaults filled in.

        Override it (calling this first) to check what depends on several settings or on the topology;
        raise :class:`~neurox.ext.ExtensionError` naming the extension."""
        return configure(cls.settings_schema, raw, name)

    def __init__(self, settings: dict, env: dict):
        self.setup(settings, env)  # the behaviour's part: context, control socket, events, polite stop
        self.settings = settings
        self.name = env["path"].rsplit("/", 1)[-1]
        self.data_dir = settings["data_dir"]
        self.run_dir = env["run_dir"]
        self.topology = Topology.load(topology_path(self.data_dir))
        self.counters: dict[str, int] = {}
        self.bad = BadFrames(self.name)
        self.recent_rejects: deque[dict] = deque(maxlen=RECENT_REJECTS)
        self.started_t = time.time()
        self.handlers.update({"metrics": lambda r: self.metrics(), "status": lambda r: self.status()})
        self._callbacks: dict = {}

    def count(self, counter: str, n: int = 1) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + n

    def reject(self, error: str, detail: str) -> None:
        """Count one piece of input that could not be used, by its atom; the first of each atom is logged,
        the last few (with details) are in ``status``. Nothing else happens: the extension carries on."""
        self.bad.note(error, detail)
        self.recent_rejects.append({"t": time.time(), "error": error, "detail": detail})

    def watch(self, sock, callback: Callable, drain: int = 0, multipart: bool = False) -> None:
        """Call ``callback()`` whenever ``sock`` (a zmq socket or a file descriptor) is readable; with
        ``drain`` > 0, ``callback(messages)`` with up to that many messages read from the socket (each a
        list of frames if ``multipart``)."""
        super().watch(sock, drain, multipart)
        self._callbacks[sock] = callback

    def unwatch(self, sock) -> None:
        super().unwatch(sock)
        del self._callbacks[sock]

    def handle_frame(self, source, frames: list | None) -> None:
        if frames is None:
            self._callbacks[source]()
        else:
            self._callbacks[source](frames)

    def handle_timer(self, now: float) -> float | None:
        wait = self.tick()
        return None if wait is None else now + wait

    def terminate(self, reason) -> None:
        self.close()

    def tick(self) -> float | None:
        """Periodic work between events; returns seconds until it wants to run again (None: no need)."""
        return None

    def metrics(self) -> dict:
        """Numbers only (counters, gauges), for dashboards."""
        return {**self.counters, **self.bad.counts()}

    def status(self) -> dict:
        return {"name": self.name, "kind": self.kind, "pid": os.getpid(), "uptime_s": time.time() - self.started_t,
                **self.counters, "rejected": self.bad.total, "recent_rejects": list(self.recent_rejects)}

    def ready_info(self) -> dict:
        return {"kind": self.kind}

    @classmethod
    def main(cls, args: dict, env: dict) -> None:
        """The process entry point of an extension class whose settings are checked already."""
        cls(args, env).serve()

    def serve(self) -> None:
        """Run until stopped (the behaviour's loop); never returns."""
        self.enter_loop(self.ready_info())

    def close(self) -> None:
        """Release what the extension holds (files, threads); subclasses close their own things first, then
        call this. The behaviour closes every socket and the context after it."""


class InputExtension(Extension):
    """An origin at the start node: :meth:`submit` packets; their answers come to :meth:`on_result`."""

    kind = "input"
    direct = False
    """Whether its packets go straight into the first layer (MessengerIn only) or through MessengerIn."""
    returns_drain = DRAIN
    """Messages read from the return socket at a time (handed to :meth:`_on_returns`)."""

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.width = joined_width(self.settings, self.topology)
        """How many values a row of its samples has."""
        self.origin = Origin(self.ctx, self.run_dir, self.topology, self.name, direct=self.direct)
        self.watch(self.origin.returns, self._on_returns, drain=self.returns_drain)

    def submit(self, rows: np.ndarray, targets: list | None = None, block: bool = False, tag=None,
               learn: bool | None = None, meta: dict | None = None) -> int:
        """Send rows (each ``width`` values) into the network as one packet; returns its packet id.

        With ``targets`` it learns from them too (unless ``learn`` is False). ``tag`` travels with the
        packet to the output extensions (``message_hash_id``). Raises ``zmq.Again`` when the start node
        is not taking more (back-pressure) and ``block`` is False.
        """
        learn = targets is not None if learn is None else learn and targets is not None
        packet = self.origin.send(np.asarray(rows, dtype=np.float32).reshape(-1, self.width), targets,
                                  learn=learn, block=block, tag=tag, meta=meta)
        self.count("submitted")
        return packet

    def submit_bundle(self, rows: list[np.ndarray], targets: list | None, tags: list, learn: bool = True) -> list[int]:
        """Several packets (``rows[i]``, each rows of ``width`` values, with ``targets[i]`` and ``tags[i]``) in
        one frame, as a neuron sends a bundle; their packet ids. ``targets`` None: they only ask. Raises
        ``zmq.Again`` (nothing sent) when the start node is not taking more."""
        learn = learn and targets is not None
        packets = self.origin.send_bundle([np.asarray(r, dtype=np.float32).reshape(-1, self.width) for r in rows],
                                          targets or [None] * len(rows), learn=learn, block=False, tags=tags)
        self.count("submitted", len(packets))
        self.count("bundles")
        return packets

    def _on_returns(self, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                results = results_of(frame)
            except FrameError as exc:
                self.reject(exc.kind, f"on the return socket: {exc.detail}")
                continue
            for result in results:
                self.on_result(result)

    def on_result(self, result: dict) -> None:
        """An answer to one of this extension's packets (see docs/protocol.md, "Neuron data plane")."""
        self.count("answered")

    def close(self) -> None:
        self.origin.close()
        super().close()


class OutputExtension(Extension):
    """Takes every answer of the end node somewhere: override :meth:`on_records` (or :meth:`on_result`)."""

    kind = "output"
    settings_schema = {
        "sources": Setting("only answers to packets from these inputs (extension names; 'messenger_in', and "
                           "'stream' for neurox run's own feed); default: every answer", None, "strings"),
    }

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.sources = set(settings.get("sources") or ()) or None
        self.results = make_socket(self.ctx, zmq.SUB, connect=outputs_endpoint(self.run_dir))
        self.results.setsockopt(zmq.SUBSCRIBE, b"result")
        self.watch(self.results, self._on_messages, drain=DRAIN, multipart=True)
        self.counters.update(received=0, skipped=0)

    def _on_messages(self, messages: list[list[bytes]]) -> None:
        for frames in messages:
            self.count("received")
            try:
                if len(frames) != 2:
                    raise FrameError("wrong_shape", f"an answer is [topic, body], got {len(frames)} frames")
                result = unpack_map(frames[1])
            except FrameError as exc:
                self.reject(exc.kind, exc.detail)
                continue
            source = result.get("source")
            if self.sources is not None and not (isinstance(source, str) and source in self.sources):
                self.count("skipped")
                continue
            self.on_result(result)
        self.flush()

    def on_result(self, result: dict) -> None:
        """One answer as MessengerOut published it: ``packet``, ``rows``, ``width``, ``output`` (rows x width
        floats), ``loss``, ``label``/``text`` lists if decoded, and from its origin ``source``,
        ``message_hash_id`` and ``targets`` (when it learnt). The default splits it into records."""
        try:
            records = sample_records(result)
        except InputError as exc:
            self.reject(exc.error, exc.detail)
            return
        self.on_records(records)

    def on_records(self, records: list[dict]) -> None:
        """One record per sample (see docs/extensions.md, "Records")."""
        raise NotImplementedError

    def flush(self) -> None:
        """Called after each burst of answers: a chance to write out what :meth:`on_records` buffered."""

    def close(self) -> None:
        self.results.close()
        super().close()


def extension_class(module_name: str) -> type[Extension]:
    """The ``Extension`` class of a module named in a topology line (or a built-in's short name);
    ExtensionError if there is none."""
    module_name = BUILT_IN.get(module_name, module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExtensionError(f"cannot import extension module {module_name!r}: {exc}") from None
    cls = getattr(module, "Extension", None)
    if not (isinstance(cls, type) and issubclass(cls, Extension)):
        raise ExtensionError(f"{module_name} has no class Extension deriving from neurox.ext's SampleInput, "
                             f"InputExtension or OutputExtension")
    return cls


def run_extension(args: dict, env: dict) -> None:
    """Process entry point: ``args`` holds ``module`` (with an ``Extension`` class) and its settings."""
    cls = extension_class(args["module"])
    topology = Topology.load(topology_path(args["data_dir"]))
    cls(cls.configure(args, env["path"].rsplit("/", 1)[-1], topology), env).serve()
