"""The process behaviour: the one loop every NeuroX process runs, as every OTP server runs ``gen_server``.

A kind of process (a supervisor, a modulator, MessengerIn, ...) is a subclass of :class:`Process` that
fills in callbacks; everything else is written once, here:

- set-up: a ZeroMQ context, the control socket (a ROUTER at ``env["control"]``), an event publisher
  to the tree's bus, a polite stop on SIGTERM and SIGINT (through a wake-up pipe, so a signal ends the
  poll at once), systemd's notify protocol when ``$NOTIFY_SOCKET`` names this process;
- the loop: poll every watched socket, the control socket and the wake-up pipe; read what is waiting
  on each watched socket (up to its drain count, asking the socket whether more is waiting rather than
  catching ``zmq.Again``) and hand it over; answer control requests (docs/protocol.md, "Control");
  then run the timer;
- the end: ``terminate(reason)``, every socket closed, and the exit code that tells the supervisor
  the reason (``_exit``: 0 ``normal``, 64 ``shutdown``, anything else a ``crash``).

The callbacks, in the order a process meets them::

    init(args, env) -> dict | None        set up; the map is the ready info (OTP: init/1 returning ok)
    handle_frame(source, frames)          a watched source was readable; frames as watched (see watch)
    handle_call(op, request) -> result    a control request (OTP: handle_call/3); raise Reply for an error
    handle_timer(now) -> deadline | None  after every round of the loop, and when its deadline passes
    terminate(reason)                     the last word (OTP: terminate/2); reason is an ExitReason

``handle_call`` defaults to a lookup in :attr:`Process.handlers` (op -> ``handler(request)``, ``ping``
and ``metrics`` already there -- every process answers ``metrics``, by default with its bad-frame
counts, which a kind with counters of its own replaces), so most kinds only add to that map in
``init`` (an op with arguments through ``_args.typed``: its handler takes them as a Struct). Any
callback may raise :class:`Stop` to end the process with a reason; another exception is a crash:
``terminate`` is still called (with reason ``crash``), then the exception goes on to the launcher,
which prints it and exits with 1.
An exception in ``init`` is a failed start: ``terminate`` is not called, as in OTP.

A kind says how a supervisor starts it (as an Elixir module does with ``child_spec/1``): set
:attr:`Process.target` to the module-level entry point (``run_x = X.main``) and call
:meth:`Process.child_spec`; supervisors read the spec, nobody else builds one by hand.
Example (the whole of a kind that counts what it is sent)::

    class Counter(Process):
        target = "mypkg.counter:run_counter"

        def init(self, args, env):
            self.inbox = make_socket(self.ctx, zmq.PULL, bind=args["inbox"])
            self.watch(self.inbox, drain=100)
            self.seen = 0
            self.handlers["count"] = lambda request: self.seen
            return {"inbox": args["inbox"]}

        def handle_frame(self, source, frames):
            self.seen += len(frames)

    run_counter = Counter.main
    spec = Counter.child_spec("counter", {"inbox": "ipc:///tmp/counter.in"})
"""
from __future__ import annotations

import signal
import time
from collections.abc import Callable

import zmq

from ._bad_frames import BadFrames
from ._control import dispatch, serve_frames
from ._events import EventPublisher
from ._exit import EXIT_SHUTDOWN, ExitReason
from ._fork import new_context, notify_ready
from ._sd_notify import Notifier
from ._sockets import make_socket
from ._wake import WakePipe

CONTROL_DRAIN = 32
"""Control requests answered per round at most, so a flood of requests cannot starve the data."""
EXIT_CODES = {"normal": 0, "shutdown": EXIT_SHUTDOWN}
"""The exit code of each reason a process stops with (a crash keeps its own code, 1 by default)."""


class Stop(Exception):
    """Raised by a callback to end the process: ``Stop()`` is a ``shutdown``, ``Stop("normal")`` a normal
    end, ``Stop("crash", code)`` a failure the supervisor will treat as one (code 1 unless given)."""

    def __init__(self, kind: str = "shutdown", code: int | None = None):
        if kind not in ("normal", "shutdown", "crash"):
            raise ValueError(f"a process stops with reason normal, shutdown or crash, got {kind!r}")
        super().__init__(kind)
        self.reason = ExitReason(kind, code=EXIT_CODES.get(kind, 1 if code is None else code))


_EVENTS, _POLLIN, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK)
"""As plain ints: pyzmq's enum flags cost a Python-level ``Flag.__and__`` per message read (3 us of 5)."""


def _read_messages(sock: zmq.Socket, limit: int, multipart: bool) -> list:
    """Up to ``limit`` messages waiting on ``sock`` (it polled readable); asks the socket whether one more
    is waiting instead of catching ``zmq.Again``."""
    recv = sock.recv_multipart if multipart else sock.recv
    try:
        messages = [recv(_NOBLOCK)]
    except zmq.Again:
        return []  # another reader took it (not in a single-threaded process; kept for safety)
    get = sock.get
    while len(messages) < limit and get(_EVENTS) & _POLLIN:
        messages.append(recv(_NOBLOCK))
    return messages


def _milliseconds_until(deadline: float, now: float) -> int:
    """A poll timeout that does not wake before ``deadline`` (rounded up), 0 once it has passed."""
    left = (deadline - now) * 1000.0
    return 0 if left <= 0 else int(left) + 1


class Process:
    """Base of every kind of NeuroX process; see the module's docstring for the callbacks."""

    target: str = ""
    """``"package.module:function"`` of the kind's entry point (the function is ``Kind.main``)."""
    restart = "permanent"
    shutdown: int | str = 5000
    type = "worker"
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    max_wait_s: float | None = None
    """Wake up at least this often even with nothing to do (None: only for events and the timer)."""

    # -- how a supervisor starts it --------------------------------------------------------------
    @classmethod
    def child_spec(cls, child_id: str, args: dict | None = None, **overrides) -> dict:
        """The child spec that starts this kind (a map, as ``normalize_child_spec`` reads it), with the
        kind's own restart, shutdown and type unless ``overrides`` say otherwise."""
        if not cls.target:
            raise TypeError(f"{cls.__name__} has no target: set it to its module's entry point")
        spec = {"id": child_id, "start": [cls.target, dict(args or {})], "restart": cls.restart,
                "shutdown": cls.shutdown, "type": cls.type, "modules": [cls.__module__]}
        unknown = set(overrides) - {"restart", "shutdown", "type", "modules"}
        if unknown:
            raise TypeError(f"child_spec overrides restart, shutdown, type or modules, got {sorted(unknown)}")
        return {**spec, **overrides}

    @classmethod
    def main(cls, args: dict, env: dict) -> None:
        """The process entry point: run an instance of this kind until it stops (never returns)."""
        cls().run(args, env)

    # -- the callbacks (override what the kind needs) ------------------------------------------
    def init(self, args: dict, env: dict) -> dict | None:
        """Set the process up; the map returned is sent with ``ready`` (the ``child_started`` info)."""
        return None

    def handle_call(self, op: str, request: dict):
        """Answer one control request: its result, or raise ``Reply(atom, detail)``."""
        return dispatch(self.handlers, op, request)

    def handle_frame(self, source, frames: list | None) -> None:
        """``source`` was readable: ``frames`` are the messages read from it (see :meth:`watch`)."""
        raise NotImplementedError(f"{type(self).__name__} watches {source!r} but has no handle_frame")

    def handle_timer(self, now: float) -> float | None:
        """Periodic work, run after every round of the loop and when the deadline it last returned has
        passed; returns the next deadline (``time.monotonic()`` seconds) or None for none."""
        return None

    def terminate(self, reason: ExitReason) -> None:
        """The process ends with ``reason``: flush, say goodbye; the base closes every socket after it."""

    # -- what the callbacks may use --------------------------------------------------------------
    def watch(self, source, drain: int = 0, multipart: bool = False) -> None:
        """Poll ``source`` (a zmq socket or a file descriptor). With ``drain`` > 0 the loop reads up to that
        many messages waiting on the socket (each a list of frames if ``multipart``) and passes them to
        ``handle_frame(source, messages)``; with 0 it reads nothing and passes None."""
        self._poller.register(source, zmq.POLLIN)
        if drain:
            self._readers[source] = lambda: self.handle_frame(source, _read_messages(source, drain, multipart))
        else:
            self._readers[source] = lambda: self.handle_frame(source, None)

    def unwatch(self, source) -> None:
        self._poller.unregister(source)
        del self._readers[source]

    def emit(self, event: str, **fields) -> None:
        """Publish an event on the tree's bus (docs/protocol.md, "Events")."""
        self.events.emit(event, **fields)

    @property
    def stop_requested(self) -> bool:
        """A polite stop was asked for (a signal); the loop ends after this round."""
        return self._stop_reason is not None

    # -- the loop, written once ------------------------------------------------------------------
    def run(self, args: dict, env: dict) -> None:
        """Set up, ``init``, then :meth:`enter_loop` (never returns)."""
        self.setup(args, env)
        try:
            info = self.init(args, env)
        except Stop as stop:
            self._close()
            raise SystemExit(stop.reason.code) from None
        except BaseException:
            self._close()
            raise
        self.enter_loop(info)

    def setup(self, args: dict, env: dict) -> None:
        """The behaviour's part of the set-up: context, control socket, events, signals, systemd.
        (``run`` calls it before ``init``; a class with a constructor of its own may call it first thing.)"""
        self.env = env
        self.handlers: dict[str, Callable[[dict], object]] = {
            "ping": lambda request: "pong",
            "metrics": lambda request: self.bad.counts()}
        self.bad = BadFrames(env.get("path") or type(self).__name__)
        self._stop_reason: ExitReason | None = None
        self._poller = zmq.Poller()
        self._readers: dict = {}
        self.ctx = new_context()  # in a child that was a spare, the one it started ahead of need
        self.notifier = Notifier.from_environment()
        try:
            self.events = EventPublisher(self.ctx, env.get("events"), env.get("path", ""))
            self.control = make_socket(self.ctx, zmq.ROUTER, bind=self.control_endpoint(args, env))
            self._wakeup = self._arm_signals()
        except BaseException:
            self._close()
            raise

    def enter_loop(self, info: dict | None) -> None:
        """Say ready (with ``info``), loop until stopped, ``terminate``, close, exit with the reason
        (OTP's ``gen_server:enter_loop``, for a process set up by hand rather than by ``init``)."""
        self._poller.register(self.control, zmq.POLLIN)
        self._readers[self.control] = self._serve_control
        self._poller.register(self._wakeup.fd, zmq.POLLIN)
        self._readers[self._wakeup.fd] = self._wakeup.drain
        notify_ready(info)
        name = self.env.get("path", "")
        self.notifier.ready(f"{name} ready")
        try:
            reason = self._loop()
        except Stop as stop:
            reason = stop.reason
        except BaseException:
            self._end(ExitReason("crash", code=1))
            raise
        self._end(reason)
        raise SystemExit(reason.code)

    def control_endpoint(self, args: dict, env: dict) -> str:
        """Where the control socket binds (``env["control"]``, as a supervisor hands it to its child)."""
        return env["control"]

    def _arm_signals(self) -> WakePipe:
        wakeup = WakePipe()
        wakeup.catch_signals()
        for sig in self.stop_signals:
            signal.signal(sig, self._on_stop_signal)
        return wakeup

    def _on_stop_signal(self, *_) -> None:
        self._stop_reason = ExitReason("shutdown", code=EXIT_SHUTDOWN)

    def _loop(self) -> ExitReason:
        poll, readers, monotonic = self._poller.poll, self._readers, time.monotonic
        watchdog = self.notifier.watchdog
        next_ping = monotonic() + watchdog if watchdog else None
        deadline = self.handle_timer(monotonic())
        while self._stop_reason is None:
            wake = deadline if next_ping is None else (next_ping if deadline is None else min(deadline, next_ping))
            if self.max_wait_s is not None:
                cap = monotonic() + self.max_wait_s
                wake = cap if wake is None else min(wake, cap)
            timeout = None if wake is None else _milliseconds_until(wake, monotonic())
            for source, _ in poll(timeout):
                readers[source]()
            now = monotonic()
            deadline = self.handle_timer(now)
            if next_ping is not None and now >= next_ping:
                self.notifier.watchdog_ping()
                next_ping = now + watchdog
        return self._stop_reason

    def _serve_control(self) -> None:
        for frames in _read_messages(self.control, CONTROL_DRAIN, multipart=True):
            serve_frames(self.control, frames, self.handle_call, self.bad)

    def _end(self, reason: ExitReason) -> None:
        """``terminate`` (whatever it raises is printed, and the end goes on), then close everything."""
        self.notifier.stopping(f"{self.env.get('path', '')} stopping: {reason.describe()}")
        try:
            self.terminate(reason)
        finally:
            self._close()

    def _close(self) -> None:
        events = getattr(self, "events", None)
        if events is not None:
            events.close()
        self.ctx.destroy()  # every socket the kind still holds, each with its own linger
        self.notifier.close()
