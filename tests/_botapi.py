"""A Bot API stand-in on loopback, for the tests of both Telegram bots (chat-ops and the messenger).

``FakeBotApi`` speaks the part of the Bot API NeuroX uses (``getUpdates`` with offset and long-poll
timeout, ``sendMessage``) at ``http://127.0.0.1:PORT/bot<token>/<method>``; tests put messages in
as Telegram would deliver them, make calls fail as Telegram does (``failures``, ``send_failures``) and
read what the bot sent back.
"""
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "4242424242:AAHx-secret_Token-do-not-log-me"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a bot stopped in the middle of a long poll closes its connection: nothing to report


class FakeBotApi:
    """A Bot API that keeps updates until they are confirmed and records every sendMessage."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.updates: list[dict] = []
        self.sent: list[dict] = []
        self.failures: list[tuple[int, bytes]] = []  # (status, body) answered to the next getUpdates calls
        self.send_failures: list[tuple[int, bytes]] = []  # ... and to the next sendMessage calls
        self.refused_sends: list[dict] = []  # the sendMessage payloads answered with one of those
        self.calls: list[tuple[float, str]] = []  # (time, method) of every call
        self.cut_off_ports: set[int] = set()  # client ports whose sendMessage calls never reach "Telegram"
        self.ids = itertools.count(1)
        self.cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                prefix = f"/bot{api.token}/"
                if not self.path.startswith(prefix):
                    return self._answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                method = self.path[len(prefix):]
                with api.cond:
                    api.calls.append((time.monotonic(), method))
                if method == "getUpdates":
                    with api.cond:
                        if api.failures:
                            status, body = api.failures.pop(0)
                            return self._raw(status, body)
                    return self._answer(200, {"ok": True, "result": api.get_updates(payload)})
                if method == "sendMessage":
                    with api.cond:
                        if self.client_address[1] in api.cut_off_ports:
                            return self._raw(500, b'{"ok": false, "error_code": 500, "description": "Lost"}')
                        if api.send_failures:
                            api.refused_sends.append(payload)
                            status, body = api.send_failures.pop(0)
                            return self._raw(status, body)
                        api.sent.append(payload)
                        api.cond.notify_all()
                    return self._answer(200, {"ok": True, "result": {"message_id": next(api.ids)}})
                return self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found: method"})

            def _answer(self, status: int, body: dict):
                self._raw(status, json.dumps(body).encode())

            def _raw(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def get_updates(self, payload: dict) -> list[dict]:
        offset, timeout = payload.get("offset"), min(float(payload.get("timeout", 0)), 5.0)
        deadline = time.monotonic() + timeout
        with self.cond:
            if offset is not None:  # confirmed: Telegram forgets them
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and (left := deadline - time.monotonic()) > 0:
                self.cond.wait(left)
            return list(self.updates)

    def say(self, user: int, text: str, username: str = "someone", chat: int | None = None) -> int:
        """A message from ``user``, privately or in the group ``chat``; returns its message id."""
        message_id = next(self.ids)
        where = {"id": user, "type": "private"} if chat is None else {"id": chat, "type": "group"}
        with self.cond:
            self.updates.append({"update_id": 500 + message_id, "message": {
                "message_id": message_id, "date": int(time.time()), "text": text, "chat": where,
                "from": {"id": user, "is_bot": False, "first_name": username, "username": username}}})
            self.cond.notify_all()
        return message_id

    def reply_to(self, message_id: int, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for sent in self.sent:
                    if sent.get("reply_to_message_id") == message_id:
                        return sent["text"]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to message {message_id}; sent: {self.sent[-5:]}")
                self.cond.wait(left)

    def replies_to(self, message_id: int) -> list[dict]:
        """Every sendMessage that replied to ``message_id``."""
        with self.cond:
            return [s for s in self.sent if s.get("reply_to_message_id") == message_id]

    def wait_sent(self, count: int, timeout: float = 30.0) -> list[dict]:
        """Wait until ``count`` messages were sent; all of them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.sent) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.sent)} messages sent, not {count}: {self.sent[-5:]}")
                self.cond.wait(left)
            return list(self.sent)

    def ask(self, user: int, text: str, timeout: float = 20.0) -> str:
        return self.reply_to(self.say(user, text), timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bot_api():
    api = FakeBotApi()
    yield api
    api.close()


