"""The MessengerIn client that loses nothing: every request ends in exactly one reply or one error.

A request carries the client's own ``message_hash_id``. The client keeps it until its deadline and
sends the *same* id again when an answer cannot come any more: MessengerIn was replaced (the socket
reconnected), no reply came within one attempt, or the reply was a transient error (``busy``,
``timeout``, ``shutdown``). MessengerIn answers a repeated id from its reply cache, or waits for the
computation already under way, instead of computing it twice; a second reply that still reaches the
client (the first MessengerIn answered just before it died) is dropped here. A request that no
network could answer before its deadline ends in one explicit ``deadline`` error. docs/protocol.md,
"A client that loses nothing", says the same for clients in other languages.
"""
from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..runtime import make_socket, pack, unpack_map

RETRYABLE = frozenset({"busy", "timeout", "shutdown"})
"""Errors that say "not now" rather than "never": the request is sent again until its deadline."""
DEFAULT_DEADLINE_S = 30.0
ATTEMPT_SLACK_S = 1.0
"""An attempt is given up on this long after MessengerIn's own timeout for it would have answered."""
SERVER_TIMEOUT_MS = 5000
BACKOFF_S = (0.01, 0.5)
EXPIRED_KEPT = 4096


@dataclass
class _Pending:
    body: bytes
    deadline: float
    attempt_s: float
    resend_at: float
    tries: int = 1
    backoff_s: float = field(default=BACKOFF_S[0])


class Client:
    """A DEALER to MessengerIn. :meth:`submit` and :meth:`results` pipeline; :meth:`ask` is one request.

    ``deadline_s`` bounds each request from its submission to its final reply, retries included.
    ``identity``: a fixed routing id, for a client that must find its answers again after its own restart.
    ``stats``: replies delivered, resends (and why), duplicates dropped, deadlines missed, replies after a deadline.
    """

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
                 curve: dict | None = None, identity: bytes | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.deadline_s = deadline_s
        self.sock = make_socket(self.ctx, zmq.DEALER, linger_ms=0)
        if curve:
            self.sock.curve_publickey, self.sock.curve_secretkey = curve["public"], curve["secret"]
            self.sock.curve_serverkey = curve["server"]
        if identity:  # MessengerIn keys its reply cache by connection: a client restarted under the same
            self.sock.setsockopt(zmq.ROUTING_ID, identity)  # identity finds its earlier answers there
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self.sock.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.pending: dict[object, _Pending] = {}
        self.done: list[dict] = []
        self.stats = {"replies": 0, "resent_reconnect": 0, "resent_silence": 0, "resent_error": 0,
                      "duplicates": 0, "deadlines": 0, "late": 0}
        self.expired: OrderedDict[object, None] = OrderedDict()
        """Requests ended at their deadline, so that a reply still coming for one is told from a duplicate."""
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self):x}"
        self._disconnected = False

    def submit(self, message_hash_id=None, deadline_s: float | None = None, **request) -> object:
        """Send one request (``vector=`` or ``text=``, optional ``target=``); returns its message_hash_id."""
        if message_hash_id is None:
            message_hash_id = f"{self._prefix}-{next(self._ids)}"
        if message_hash_id in self.pending:
            raise ValueError(f"request {message_hash_id!r} is still waiting for its answer")
        now = time.monotonic()
        attempt_s = request.get("timeout_ms", SERVER_TIMEOUT_MS) / 1000.0 + ATTEMPT_SLACK_S
        body = pack({"message_hash_id": message_hash_id, **request})
        self.pending[message_hash_id] = _Pending(body, now + (deadline_s or self.deadline_s), attempt_s,
                                                 now + attempt_s)
        self._send(body)
        return message_hash_id

    def results(self, timeout: float = 1.0) -> list[dict]:
        """The final replies that came within ``timeout`` seconds (at least one if any is due by then)."""
        until = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._pump(max(0.0, min(until, self._next_due(now)) - now))
            if self.done or time.monotonic() >= until:
                break
        out, self.done = self.done, []
        return out

    def ask(self, timeout: float | None = None, **request) -> dict:
        """One round trip: the final reply map, ``ok`` true or false (``deadline`` if none came in time)."""
        message_id = self.submit(deadline_s=timeout, **request)
        others: list[dict] = []
        try:
            while True:
                for reply in self.results(self.deadline_s):
                    if reply.get("message_hash_id") == message_id:
                        return reply
                    others.append(reply)
        finally:
            self.done = others + self.done

    def _next_due(self, now: float) -> float:
        due = [min(p.resend_at, p.deadline) for p in self.pending.values()]
        return min(due, default=now + 1.0)

    def _pump(self, wait_s: float) -> None:
        events = dict(self.poller.poll(max(0, int(wait_s * 1000))))
        if self.monitor in events:
            self._on_monitor()
        if self.sock in events:
            while self.sock.poll(0):
                self._on_reply(self.sock.recv_multipart()[-1])
        self._on_clock(time.monotonic())

    def _on_monitor(self) -> None:
        """A MessengerIn that comes back has lost whatever it held: send every pending request again."""
        while self.monitor.poll(0):
            event = parse_monitor_message(self.monitor.recv_multipart())["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self._disconnected = True
            elif event == zmq.EVENT_CONNECTED and self._disconnected:
                self._disconnected = False
                for pending in self.pending.values():
                    self.stats["resent_reconnect"] += 1
                    self._resend(pending, time.monotonic())

    def _on_reply(self, body: bytes) -> None:
        try:
            reply = unpack_map(body)
        except Exception:  # noqa: BLE001 -- a garbled reply is as good as none: the attempt times out
            return
        pending = self.pending.get(reply.get("message_hash_id"))
        if pending is None:  # a second reply to an answered request, or one after the request's own deadline
            self.stats["late" if reply.get("message_hash_id") in self.expired else "duplicates"] += 1
            return
        now = time.monotonic()
        if not reply.get("ok") and reply.get("error") in RETRYABLE and now + pending.backoff_s < pending.deadline:
            self.stats["resent_error"] += 1
            pending.resend_at = now + pending.backoff_s
            pending.backoff_s = min(pending.backoff_s * 2, BACKOFF_S[1])
            return
        self._finish(reply)

    def _on_clock(self, now: float) -> None:
        for message_id, pending in list(self.pending.items()):
            if now >= pending.deadline:
                self.stats["deadlines"] += 1
                self.expired[message_id] = None
                if len(self.expired) > EXPIRED_KEPT:
                    self.expired.popitem(last=False)
                self._finish({"message_hash_id": message_id, "ok": False, "error": "deadline",
                              "detail": f"no answer after {pending.tries} attempt(s) before the deadline"})
            elif now >= pending.resend_at:
                self.stats["resent_silence"] += 1
                self._resend(pending, now)

    def _resend(self, pending: _Pending, now: float) -> None:
        pending.tries += 1
        pending.resend_at = now + pending.attempt_s
        self._send(pending.body)

    def _send(self, body: bytes) -> None:
        try:
            self.sock.send_multipart([b"", body], zmq.NOBLOCK)
        except zmq.Again:
            pass  # nothing connected yet: the next attempt, or the reconnect, sends it

    def _finish(self, reply: dict) -> None:
        del self.pending[reply.get("message_hash_id")]
        self.stats["replies"] += 1
        self.done.append(reply)

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
