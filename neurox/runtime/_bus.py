"""The event bus process: PULL the events every process PUSHes, PUBlish each as ``[name, map]``, keep the
recent ones for late joiners (``recent_events`` on its control socket). A kind of the process behaviour."""
from __future__ import annotations

import collections
import signal
from typing import Annotated

import msgspec
import zmq

from ._args import Args, op_arguments, typed
from ._bad_frames import BadFrames
from ._behaviour import Process
from ._events import EVENT_MAX_BYTES
from ._sockets import EVENT_HWM, make_socket
from ._wire import FrameError, unpack_map

HISTORY = 2000
EVENTS_DRAIN = 1000
"""Events republished per wake-up at most before the control socket gets its turn."""


class RecentEvents(Args):
    limit: Annotated[int, msgspec.Meta(ge=0)] = 100
    prefix: str = ""


BUS_ARGS = op_arguments("event bus", {"recent_events": RecentEvents})


class EventBus(Process):
    """``args``: ``sink`` (PULL), ``publish`` (PUB), ``control`` and optionally ``history``."""

    target = "neurox.runtime._bus:run_event_bus"
    stop_signals = (signal.SIGTERM,)

    def control_endpoint(self, args: dict, env: dict) -> str:
        return args["control"]

    def init(self, args: dict, env: dict) -> dict:
        self.sink = make_socket(self.ctx, zmq.PULL, bind=args["sink"], hwm=EVENT_HWM)
        self.pub = make_socket(self.ctx, zmq.PUB, bind=args["publish"], hwm=EVENT_HWM)
        self.history: collections.deque[dict] = collections.deque(maxlen=int(args.get("history", HISTORY)))
        self.bad = BadFrames("event bus")
        self.watch(self.sink, drain=EVENTS_DRAIN)
        self.handlers.update(typed(BUS_ARGS, {"recent_events": self.recent, "status": lambda r: {
            "events": len(self.history), **self.bad.counts()}}))
        return {"publish": args["publish"]}

    def handle_frame(self, source, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                event = unpack_map(frame, EVENT_MAX_BYTES)
                name = str(event["event"])
            except FrameError as exc:
                self.bad.note(exc.kind, exc.detail)
                continue
            except KeyError:
                self.bad.note("wrong_type", "an event needs an 'event' name")
                continue
            self.history.append(event)
            self.pub.send_multipart([name.encode(), frame])

    def recent(self, request: RecentEvents) -> list[dict]:
        limit, prefix = request.limit, request.prefix
        matching = [e for e in self.history if str(e.get("event", "")).startswith(prefix)]
        return matching[-limit:] if limit else []


run_event_bus = EventBus.main
"""Process entry point (``EventBus.target``)."""
