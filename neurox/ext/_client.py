"""A MessengerIn client: what ``neurox ask`` and programs use to send requests and get replies."""
from __future__ import annotations

import itertools
import os

import zmq

from ..runtime import make_socket, pack, unpack_map


class AskError(RuntimeError):
    """MessengerIn did not answer in time (the reply map carries any other error)."""


class MessengerClient:
    """A DEALER to MessengerIn; :meth:`send` and :meth:`receive` may be pipelined, :meth:`ask` is one round trip."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = make_socket(self.ctx, zmq.DEALER, connect=endpoint, linger_ms=0)
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-{id(self):x}"

    def send(self, message_hash_id=None, **request) -> object:
        """Send one request (``vector=`` or ``text=``, optional ``target=``); returns its message_hash_id."""
        if message_hash_id is None:
            message_hash_id = f"{self._prefix}-{next(self._ids)}"
        self.sock.send_multipart([b"", pack({"message_hash_id": message_hash_id, **request})])
        return message_hash_id

    def receive(self, timeout: float = 10.0) -> dict:
        if not self.sock.poll(int(timeout * 1000)):
            raise AskError(f"no reply from MessengerIn within {timeout} s")
        return unpack_map(self.sock.recv_multipart()[-1])

    def ask(self, timeout: float = 10.0, **request) -> dict:
        message_id = self.send(**request)
        while True:
            reply = self.receive(timeout)
            if reply.get("message_hash_id") == message_id:
                return reply

    def close(self) -> None:
        self.sock.close()
