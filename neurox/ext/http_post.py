"""``http_post``: every answer of the network POSTed as JSON to a configured URL, with retries.

Records (docs/extensions.md, "Records") wait in a bounded queue and go out in batches::

    POST <url>   Content-Type: application/json
    {"source": "<this extension's name>", "records": [record, ...]}

A batch the receiver answers with 2xx is delivered. A connection error, a timeout, 408, 429 or 5xx is
tried again after an exponential back-off (``backoff_s``, doubling up to ``backoff_max_s``, with
jitter; a 429 or 503's ``Retry-After`` is honoured up to that cap), at most ``retries`` times; then the
batch is dropped and counted (``dropped_failed``). Any other answer (400, 401, 404, ...) would come
again: the batch is dropped at once (``dropped_refused``). While the receiver is down new records go
on queueing; beyond ``queue`` they are dropped and counted (``dropped_full``) -- the network is never
slowed by its receiver. On a stop, what is queued gets ``drain_s`` to go out; the rest is counted
(``dropped_shutdown``).

The sending happens on a thread of its own with the standard library's ``urllib`` (no proxy from
the environment), so a slow receiver never holds up the extension's loop.
"""
from __future__ import annotations

import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from urllib.parse import urlsplit

from ..neuron import Topology
from ._api import OutputExtension
from ._samples import to_json
from ._settings import ExtensionError, Setting

RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)


class Extension(OutputExtension):
    settings_schema = {
        **OutputExtension.settings_schema,
        "url": Setting("where batches of records are POSTed (http:// or https://)"),
        "batch": Setting("records per POST at most", 100, "int", minimum=1),
        "queue": Setting("records waiting at most; more are dropped and counted (dropped_full)", 10000, "int",
                         minimum=1),
        "retries": Setting("attempts after the first for a batch that failed in a way that may pass", 5, "int",
                           minimum=0),
        "backoff_s": Setting("the wait before the first retry; it doubles each time", 0.2, "float", minimum=0),
        "backoff_max_s": Setting("the longest wait between two attempts", 10.0, "float", minimum=0),
        "timeout_s": Setting("an attempt that has no answer in this time has failed", 5.0, "float", minimum=0.01),
        "drain_s": Setting("on a stop, how long what is queued may still take to go out", 1.0, "float", minimum=0),
        "token_file": Setting("a file holding a bearer token to send (Authorization: Bearer ...)", None, "path"),
        "token_env": Setting("an environment variable holding that token, instead of token_file", None),
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        settings = super().configure(raw, name, topology)
        url = urlsplit(settings["url"])
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ExtensionError(f"extension {name!r}: 'url': expected an http:// or https:// URL, "
                                 f"got {settings['url']!r}")
        if settings["token_file"] and settings["token_env"]:
            raise ExtensionError(f"extension {name!r}: give token_file or token_env, not both")
        return settings

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.sender = Sender(settings, self.name, _token(settings))
        self.thread = threading.Thread(target=self.sender.run, name="http_post", daemon=True)
        self.thread.start()

    def on_records(self, records: list[dict]) -> None:
        self.sender.put(records)

    def metrics(self) -> dict:
        return {**super().metrics(), **self.sender.stats()}

    def status(self) -> dict:
        return {**super().status(), **self.sender.stats(), "url": self.sender.url,
                "last_error": self.sender.last_error}

    def close(self) -> None:
        self.sender.stop(self.settings["drain_s"])
        self.thread.join(self.settings["drain_s"] + self.settings["timeout_s"])
        super().close()


class Sender:
    """The queue and the delivery thread. Counters are written by one thread each and only read by the
    other, so they need no lock; the queue's own lock orders the hand-over."""

    def __init__(self, settings: dict, name: str, token: str | None):
        self.url = settings["url"]
        self.batch, self.limit = settings["batch"], settings["queue"]
        self.retries, self.timeout = settings["retries"], settings["timeout_s"]
        self.backoff, self.backoff_max = settings["backoff_s"], settings["backoff_max_s"]
        self.name = name
        self.headers = {"Content-Type": "application/json", "User-Agent": "neurox-http-post"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.queue: deque[dict] = deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.deadline = None
        self.queued = self.dropped_full = 0  # written by the loop's thread
        self.delivered = self.posts = self.retried = self.dropped_failed = self.dropped_refused = 0
        self.dropped_shutdown = 0
        self.last_error: str | None = None

    def put(self, records: list[dict]) -> None:
        with self.cond:
            room = self.limit - len(self.queue)
            taken = records[:max(0, room)]
            self.queue.extend(taken)
            self.queued += len(taken)
            self.dropped_full += len(records) - len(taken)
            if taken:
                self.cond.notify()

    def stats(self) -> dict:
        return {"queued": self.queued, "waiting": len(self.queue), "delivered": self.delivered, "posts": self.posts,
                "retried": self.retried, "dropped_full": self.dropped_full, "dropped_failed": self.dropped_failed,
                "dropped_refused": self.dropped_refused, "dropped_shutdown": self.dropped_shutdown}

    def stop(self, drain_s: float) -> None:
        with self.cond:
            self.stopping = True
            self.deadline = time.monotonic() + drain_s
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if not self.queue or self._past_deadline():
                    self.dropped_shutdown += len(self.queue)
                    self.queue.clear()
                    return
                batch = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
            self._deliver(batch)

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _deliver(self, batch: list[dict]) -> None:
        body = to_json({"source": self.name, "records": batch}).encode()
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            self.posts += 1
            outcome, wait_hint = self._post(body)
            if outcome == "delivered":
                self.delivered += len(batch)
                return
            if outcome == "refused":
                self.dropped_refused += len(batch)
                return
            if attempt == self.retries:
                break
            delay = min(self.backoff_max, self.backoff * 2 ** attempt)
            delay = delay / 2 + random.uniform(0, delay / 2)  # equal jitter: senders do not retry in step
            if wait_hint is not None:
                delay = min(self.backoff_max, max(delay, wait_hint))
            with self.cond:
                if self.stopping:  # draining: wait no longer than the drain may take
                    self.cond.wait(max(0.0, min(delay, self.deadline - time.monotonic())))
                else:  # a stop ends the wait: what is left goes out (or is counted) within drain_s
                    self.cond.wait_for(lambda: self.stopping, timeout=delay)
                if self._past_deadline():
                    self.dropped_shutdown += len(batch)
                    return
        self.dropped_failed += len(batch)

    def _post(self, body: bytes) -> tuple[str, float | None]:
        """One attempt: ``delivered``, ``refused`` (do not try again) or ``failed`` (may pass later), and the
        receiver's Retry-After in seconds if it gave one."""
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                response.read()
            return "delivered", None
        except urllib.error.HTTPError as exc:
            exc.close()
            self.last_error = f"HTTP {exc.code} {exc.reason}"
            if exc.code not in RETRY_STATUSES:
                return "refused", None
            return "failed", _retry_after(exc.headers.get("Retry-After"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            return "failed", None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the back-off decides


def _token(settings: dict) -> str | None:
    if settings["token_env"]:
        return os.environ.get(settings["token_env"], "").strip() or None
    if settings["token_file"]:
        with open(settings["token_file"], encoding="utf-8") as f:
            return f.read().strip() or None
    return None
