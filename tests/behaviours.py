"""A tiny kind of process on the behaviour (:class:`neurox.runtime.Process`), for tests/test_behaviour.py.

``Echo`` binds a PULL at ``args["inbox"]`` and reports every batch it drains as a ``batch`` event; its timer
fires every ``tick_s`` (a ``tick`` event each time) if given; its calls: ``count``, ``fail`` (a handler that
raises an unexpected exception: a crash), ``stop`` (``Stop(kind)``), ``reject`` (an error reply).
``terminate`` says its reason as a ``terminated`` event. ``args["init"]``: ``"raise"`` fails the start
with an exception, ``"stop"`` with ``Stop("crash", 3)``.
"""
import zmq

from neurox.runtime import Process, Reply, Stop, make_socket


class Echo(Process):
    target = "behaviours:run_echo"
    shutdown = 1000

    def init(self, args: dict, env: dict) -> dict:
        if args.get("init") == "raise":
            raise RuntimeError("init failed on purpose")
        if args.get("init") == "stop":
            raise Stop("crash", 3)
        self.inbox = make_socket(self.ctx, zmq.PULL, bind=args["inbox"])
        self.watch(self.inbox, drain=args.get("drain", 4))
        self.seen = 0
        self.tick_s = args.get("tick_s")
        self.next_tick = None
        self.handlers.update(count=lambda request: self.seen, fail=self._fail, stop=self._stop_call,
                          reject=self._reject)
        return {"inbox": args["inbox"]}

    def handle_frame(self, source, frames):
        assert source is self.inbox
        self.seen += len(frames)
        self.emit("batch", size=len(frames), seen=self.seen, frames=frames)

    def handle_timer(self, now: float):
        if self.tick_s is None:
            return None
        if self.next_tick is not None and now >= self.next_tick:
            self.emit("tick", late_ms=(now - self.next_tick) * 1000)
            self.next_tick = None
        if self.next_tick is None:
            self.next_tick = now + self.tick_s
        return self.next_tick

    def terminate(self, reason):
        self.emit("terminated", reason=reason.to_wire(), seen=self.seen)

    def _fail(self, request):
        raise RuntimeError("a bug in a handler")

    def _stop_call(self, request):
        raise Stop(request["kind"])

    def _reject(self, request):
        raise Reply("not_today", "refused on purpose")


run_echo = Echo.main
