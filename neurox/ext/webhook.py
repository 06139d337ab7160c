"""``webhook``: an HTTP endpoint that takes samples as JSON -- one, or a batch -- optionally with targets.

``POST /samples`` with a JSON body::

    {"vector": [0.0, 0.5, ...], "target": 3, "message_hash_id": "a1"}        one sample
    {"samples": [{"vector": [...]}, {"text": "hello", "target": "greeting"}]}   a batch

is answered ``202 Accepted`` with ``{"ok": true, "accepted": n, "ids": [...]}`` once every sample is
checked and queued: the answers go to the output extensions (``jsonl``, ``http_post``, ``zmq_pub``),
each with its ``message_hash_id`` (the one given, or the id in ``ids``). Nothing is queued from a
request with one bad sample; it gets ``400`` with ``{"ok": false, "error": ATOM, "detail": ..., "sample":
index}``. Other answers: 401 (``token_file``/``token_env`` set and no valid ``Authorization: Bearer``),
404, 405, 411 (no Content-Length), 413 (a body over ``max_bytes``, refused before it is read), 415, 503
(the queue is full: back-pressure, with ``Retry-After``). Every refusal is counted by its atom.

With ``tls_cert`` and ``tls_key`` it speaks HTTPS only (TLS 1.2 or later, the standard library's ``ssl``;
each connection's handshake happens on its own thread, so a slow client holds up no other).

It is Python's own ``http.server`` on threads: the HTTP threads only parse, check and hand samples to
the extension's loop through a lock-protected inbox; everything else stays on the loop. See
docs/extensions.md, "webhook".
"""
from __future__ import annotations

import hmac
import itertools
import json
import os
import ssl
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ..neuron import Topology
from ._sample_input import SampleInput
from ._samples import InputError, TargetSpace, parse_sample
from ._text import text_encoder
from ._settings import ExtensionError, Setting

JSON_TYPES = ("application/json", "text/json", "application/x-ndjson")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Extension(SampleInput):
    settings_schema = {
        **SampleInput.settings_schema,
        "bind": Setting("the address to listen on", "127.0.0.1"),
        "port": Setting("the TCP port; 0: any free one (its URL is in status and in the child_started event)",
                        8080, "int", minimum=0),
        "route": Setting("the path samples are POSTed to", "/samples"),
        "max_bytes": Setting("the largest request body; a larger one gets 413 before it is read", 1024 * 1024,
                             "int", minimum=2),
        "max_batch": Setting("the most samples in one request", 1000, "int", minimum=1),
        "token_file": Setting("a file holding the bearer token requests must carry (Authorization: Bearer ...)",
                              None, "path"),
        "token_env": Setting("an environment variable holding the bearer token, instead of token_file", None),
        "max_connections": Setting("connections served at once; more are answered 503 at once", 64, "int",
                                   minimum=1),
        "timeout_s": Setting("a client that sends nothing for this long is disconnected", 10.0, "float",
                             minimum=0.01),
        "tls_cert": Setting("a PEM certificate (chain): serve HTTPS only, with tls_key", None, "path"),
        "tls_key": Setting("the PEM private key of tls_cert", None, "path"),
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        settings = super().configure(raw, name, topology)
        if settings["token_file"] and settings["token_env"]:
            raise ExtensionError(f"extension {name!r}: give token_file or token_env, not both")
        if not settings["route"].startswith("/"):
            raise ExtensionError(f"extension {name!r}: 'route' must start with '/', got {settings['route']!r}")
        try:
            _read_token(settings)
            _tls_context(settings)
        except (ExtensionError, OSError, ssl.SSLError) as exc:
            raise ExtensionError(f"extension {name!r}: {exc}") from None
        return settings

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        token = _read_token(settings)
        if token is None and settings["bind"] not in LOOPBACK:
            print(f"{self.name}: listening on {settings['bind']} without a token: anyone who reaches it may "
                  f"feed the network", file=sys.stderr, flush=True)
        self.intake = Intake()
        self.watch(self.intake.wake_r, self._on_intake)
        self.server = _Server((settings["bind"], settings["port"]), _Handler, self, settings, token,
                              _tls_context(settings))
        host, port = self.server.server_address[:2]
        scheme = "https" if self.server.tls else "http"
        self.url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}{settings['route']}"
        self.counters.update(requests=0, accepted=0)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="webhook", daemon=True)
        self.thread.start()

    def ready_info(self) -> dict:
        return {"kind": self.kind, "url": self.url}

    def status(self) -> dict:
        return {**super().status(), "url": self.url, "token": self.server.token is not None,
                "tls": self.server.tls is not None}

    def waiting(self) -> int:
        """Samples accepted and not sent yet (called from the HTTP threads: reads only)."""
        return len(self.pending) + self.intake.samples

    def _on_intake(self) -> None:
        os.read(self.intake.wake_r, 4096)
        with self.server.admit_lock:  # no request is admitted while its room is being moved to the queue
            items = self.intake.take_all()
            for item in items:
                if item[0] == "accepted":
                    for sample in item[1]:
                        self.offer(sample)  # always room: the HTTP thread checked it under the same lock
        for item in items:
            self.count("requests")
            if item[0] == "accepted":
                self.count("accepted", len(item[1]))
            else:
                _, status, error, detail = item
                self.reject(f"http_{status}_{error}", detail)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.unwatch(self.intake.wake_r)
        self.intake.close()
        super().close()


class Intake:
    """What the HTTP threads hand to the extension's loop: outcomes in order, and a pipe to wake it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: deque[tuple] = deque()
        self.samples = 0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def put(self, item: tuple, samples: int = 0) -> None:
        with self.lock:
            self.items.append(item)
            self.samples += samples
        try:
            os.write(self.wake_w, b"!")
        except BlockingIOError:
            pass  # the loop has wake-ups enough pending

    def take_all(self) -> list[tuple]:
        with self.lock:
            items = list(self.items)
            self.items.clear()
            self.samples = 0
        return items

    def close(self) -> None:
        os.close(self.wake_r)
        os.close(self.wake_w)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, extension: Extension, settings: dict, token: str | None,
                 tls: ssl.SSLContext | None = None):
        self.extension = extension
        self.tls = tls
        self.settings = settings
        self.token = token
        self.targets = TargetSpace(extension.topology)
        self.width = extension.width
        self.text = text_encoder(extension.topology)
        self.admit_lock = threading.Lock()  # a request's room check and its hand-over happen as one
        self.connections = threading.BoundedSemaphore(settings["max_connections"])
        self.ids = itertools.count(1)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.connections.acquire(blocking=False):
            try:
                if self.tls is None:  # over TLS a plain answer would be noise: the connection is just closed
                    request.sendall(_response_bytes(503, "busy", "too many connections; try again shortly"))
            finally:
                self.shutdown_request(request)
            self.extension.intake.put(("rejected", 503, "busy", "too many connections"))
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def finish_request(self, request, client_address):
        """Over TLS, the handshake first (on this connection's thread, within ``timeout_s``)."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(self.settings["timeout_s"])
            secure = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.extension.intake.put(("rejected", 400, "tls_handshake", f"{client_address[0]}: {exc}"))
            return None
        try:
            return super().finish_request(secure, client_address)
        finally:
            self.shutdown_request(secure)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "neurox-webhook"
    disable_nagle_algorithm = True
    """An answer's headers and body go out as written: with Nagle's algorithm the body would wait for
    the client's delayed ACK of the headers, 40 ms a request on a keep-alive connection."""

    def setup(self):
        self.timeout = self.server.settings["timeout_s"]
        super().setup()

    def log_message(self, format, *args):  # noqa: A002 -- counted, not logged line by line
        pass

    def do_POST(self):
        server = self.server
        settings = server.settings
        if urlsplit(self.path).path != settings["route"]:
            return self._refuse(404, "not_found", f"no such path {urlsplit(self.path).path!r}; samples go to "
                                                  f"POST {settings['route']}")
        if server.token is not None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {server.token}".encode()):
                return self._refuse(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required",
                                    {"WWW-Authenticate": 'Bearer realm="neurox"'})
        content_type = self.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            return self._refuse(415, "unsupported_media_type", f"the body must be JSON (Content-Type: "
                                                               f"application/json), not {content_type!r}")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or "Content-Length" not in self.headers:
            return self._refuse(411, "length_required", "send the body with a Content-Length")
        try:
            length = int(self.headers["Content-Length"])
            if length < 0:
                raise ValueError
        except ValueError:
            return self._refuse(400, "bad_request", "Content-Length is not a number of bytes")
        if length > settings["max_bytes"]:
            return self._refuse(413, "too_large", f"a body of {length} bytes is more than the limit of "
                                                  f"{settings['max_bytes']}")
        body = self.rfile.read(length)
        if len(body) < length:
            return self._refuse(400, "bad_request", f"the body ended after {len(body)} of {length} bytes")
        try:
            samples = self._samples(body)
        except InputError as exc:
            index = getattr(exc, "sample", None)
            return self._refuse(400, exc.error, exc.detail, read_body=True,
                                extra=None if index is None else {"sample": index})
        with server.admit_lock:
            if server.extension.waiting() + len(samples) > server.extension.queue_limit:
                return self._refuse(503, "busy", "the queue is full; try again shortly", {"Retry-After": "1"},
                                    read_body=True)
            server.extension.intake.put(("accepted", samples), len(samples))
        self._send(202, {"ok": True, "accepted": len(samples), "ids": [s.tag for s in samples]})

    def _samples(self, body: bytes) -> list:
        try:
            obj = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InputError("bad_json", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        except (ValueError, RecursionError) as exc:
            raise InputError("bad_json", f"the body is not JSON ({exc})") from None
        server = self.server
        if isinstance(obj, dict) and "samples" in obj:
            if set(obj) != {"samples"} or not isinstance(obj["samples"], list) or not obj["samples"]:
                raise InputError("bad_input", "a batch is {\"samples\": [sample, ...]} with at least one sample "
                                              "and nothing else")
            items = obj["samples"]
            if len(items) > server.settings["max_batch"]:
                raise InputError("too_large", f"{len(items)} samples is more than max_batch "
                                              f"({server.settings['max_batch']})")
        else:
            items = [obj]
        samples = []
        for index, item in enumerate(items):
            try:
                sample = parse_sample(item, server.width, server.targets, server.text)
            except InputError as exc:
                if len(items) > 1:
                    exc.sample = index
                    exc.detail = f"sample {index}: {exc.detail}"
                raise
            if sample.tag is None:
                sample.tag = f"{server.extension.name}-{next(server.ids)}"
            samples.append(sample)
        return samples

    def _refuse(self, status: int, error: str, detail: str, headers: dict | None = None, read_body: bool = False,
                extra: dict | None = None):
        self.server.extension.intake.put(("rejected", status, error, detail))
        if not read_body:
            self.close_connection = True  # the body was not read: the connection cannot carry another request
        self._send(status, {"ok": False, "error": error, "detail": detail, **(extra or {})}, headers)

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _not_allowed(self):
        if urlsplit(self.path).path != self.server.settings["route"]:
            return self._refuse(404, "not_found", f"no such path {urlsplit(self.path).path!r}")
        self._refuse(405, "method_not_allowed", f"{self.command} is not allowed; POST samples here",
                     {"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed


def _response_bytes(status: int, error: str, detail: str) -> bytes:
    body = json.dumps({"ok": False, "error": error, "detail": detail}).encode()
    return (f"HTTP/1.1 {status} Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            f"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode() + body


def _tls_context(settings: dict) -> ssl.SSLContext | None:
    """The server's TLS context from ``tls_cert`` and ``tls_key`` (both or neither); None for plain HTTP."""
    cert, key = settings["tls_cert"], settings["tls_key"]
    if not cert and not key:
        return None
    if not cert or not key:
        raise ExtensionError("HTTPS needs both tls_cert and tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _read_token(settings: dict) -> str | None:
    """The bearer token from its file or variable (never logged); None if neither is set."""
    if settings["token_env"]:
        token = os.environ.get(settings["token_env"], "").strip()
        if not token:
            raise ExtensionError(f"the environment variable {settings['token_env']} holding the token is unset "
                                 f"or empty")
        return token
    if settings["token_file"]:
        with open(settings["token_file"], encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ExtensionError(f"the token file {settings['token_file']} is empty")
        return token
    return None
