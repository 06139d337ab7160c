"""``telegram``: a Telegram chat as the network's messenger -- people write, the network answers.

Text from the configured users (or anyone in the configured chats) enters MessengerIn as a ``text``
request whose ``message_hash_id`` is ``tg:<chat id>:<message id>``; the answer that comes back out
of MessengerOut is sent as a reply to that very message, in that chat. ``/learn LABEL text`` is a
request with a target: the network learns from it (and says what it would have answered before).
Anyone else gets the operator bot's refusal.

Nothing is lost or answered twice across a restart of this extension or of MessengerIn: the
``getUpdates`` offset, the messages taken and not yet answered, the answers not yet sent and the
messages answered lately are kept in ``DATA_DIR/extensions/NAME.journal.json``, saved before Telegram
is told the messages were taken; requests go through :class:`~neurox.ext.Client` under a fixed
identity, so a request asked again after a restart is answered from MessengerIn's reply cache rather
than computed (and learnt) twice. Answers go out at most ``rate`` a second and one per
``chat_interval_s`` in a chat, honour the Bot API's ``retry_after``, and are retried with back-off while
Telegram cannot be reached. At most ``queue`` messages wait; beyond that none is fetched (Telegram
keeps them). Two threads talk HTTP (long-polling for updates, sending answers); the loop's thread
keeps the journal and talks to MessengerIn. See docs/extensions.md, "telegram".

    [[extension]]
    name = "chat"
    module = "telegram"
    users = [11111111]
    token_file = "/etc/neurox/telegram.token"
"""
from __future__ import annotations

import heapq
import itertools
import os
import queue
import random
import sys
import threading
import time

from ..neuron import Topology, messenger_in_endpoint
from ._api import Extension as ExtensionBase
from ._bot_api import DEFAULT_API_URL, TOKEN_ENV, BotApi, BotApiError, refusal
from ._client import Client
from ._samples import TargetSpace
from ._settings import ExtensionError, Setting
from ._telegram_chat import Access, Journal, Pacer, answer_text, backoff, message_key, read_message

PERMANENT = (400, 403)
"""sendMessage errors that would come again (a chat that is gone, a bot that was blocked): not retried."""


class Extension(ExtensionBase):
    kind = "input"
    settings_schema = {
        "users": Setting("Telegram user ids whose messages are answered, in any chat", [], "ints"),
        "chats": Setting("chat ids (groups) in which everyone's messages are answered", [], "ints"),
        "token_file": Setting("a file holding the bot's token", None, "path"),
        "token_env": Setting("the environment variable holding the token when there is no token_file", TOKEN_ENV),
        "api_url": Setting("the Bot API's base URL (a local Bot API server's, or a test's)", DEFAULT_API_URL),
        "poll_timeout_s": Setting("getUpdates long-polling timeout", 30, "int", minimum=0),
        "rate": Setting("answers sent per second at most, in all (Telegram allows about 30)", 25.0, "float",
                        minimum=0.01),
        "chat_interval_s": Setting("seconds between two answers in one chat at least (Telegram: about 1)", 1.0,
                                   "float", minimum=0),
        "queue": Setting("messages taken and not answered yet at most; beyond, no more are fetched (Telegram "
                         "keeps them)", 1000, "int", minimum=1),
        "backoff_s": Setting("the wait before the first retry of a failed Bot API call; it doubles", 1.0, "float",
                             minimum=0.001),
        "backoff_max_s": Setting("the longest wait between two retries", 60.0, "float", minimum=0.001),
        "send_timeout_s": Setting("a sendMessage with no answer in this time has failed (and is retried)", 10.0,
                                  "float", minimum=0.1),
        "deadline_s": Setting("one try of a request to MessengerIn, its retries included; then it is asked again",
                              60.0, "float", minimum=0.1),
        "max_chars": Setting("longer messages are answered with a refusal, not sent to the network", 4000, "int",
                             minimum=1),
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        settings = super().configure(raw, name, topology)
        problems = []
        if not settings["users"] and not settings["chats"]:
            problems.append("list the Telegram user ids (users) or chat ids (chats) it answers")
        if not settings["api_url"].startswith(("http://", "https://")):
            problems.append(f"'api_url' must start with http:// or https://, got {settings['api_url']!r}")
        try:
            read_token(settings)
        except ExtensionError as exc:
            problems.append(str(exc))
        if problems:
            raise ExtensionError(f"extension {name!r}: " + "; ".join(problems))
        return settings

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.access = Access(frozenset(settings["users"]), frozenset(settings["chats"]))
        self.targets = TargetSpace(self.topology)
        self.max_chars, self.queue_limit = settings["max_chars"], settings["queue"]
        api = BotApi(settings["api_url"], read_token(settings))
        os.makedirs(os.path.join(self.data_dir, "extensions"), exist_ok=True)
        self.journal = Journal(os.path.join(self.data_dir, "extensions", f"{self.name}.journal.json"))
        self.client = Client(messenger_in_endpoint(self.run_dir), self.ctx, deadline_s=settings["deadline_s"],
                             identity=f"telegram:{self.name}".encode())
        self.watch(self.client.sock, self._on_replies)
        self.watch(self.client.monitor, self._on_replies)
        self.intake: queue.SimpleQueue = queue.SimpleQueue()
        self._intake_r, self._intake_w = os.pipe()
        os.set_blocking(self._intake_w, False)
        self.watch(self._intake_r, self._on_intake)
        self.counters.update(updates=0, asked=0, learnt=0, refused=0, said=0, sent=0, resumed=0, asked_again=0,
                             duplicates=0, late=0, send_retries=0, rate_limited=0, undeliverable=0, poll_errors=0)
        self.state = "polling"
        timing = (settings["backoff_s"], settings["backoff_max_s"])
        self.poller = _Poller(api, settings["poll_timeout_s"], self._hand, timing)
        self.sender = _Sender(api, Pacer(settings["rate"], settings["chat_interval_s"]), self._hand, timing,
                              settings["send_timeout_s"])
        self.poller.offset = self.journal.offset
        for job in self.journal.jobs.values():
            self.count("resumed")
            self._ask(job)
        for delivery in self.journal.deliveries.values():
            self.count("resumed")
            self.sender.put(delivery)
        self._pace()
        self.poller.start()
        self.sender.start()

    def ready_info(self) -> dict:
        return {"kind": self.kind, "messenger": "telegram"}

    def status(self) -> dict:
        return {**super().status(), "state": self.state, "offset": self.journal.offset,
                "waiting": len(self.journal.jobs), "to_send": len(self.journal.deliveries)}

    def metrics(self) -> dict:
        return {**super().metrics(), "waiting": len(self.journal.jobs), "to_send": len(self.journal.deliveries)}

    def tick(self) -> float | None:
        self._on_replies()  # the client's clock: resends after a silence, deadlines
        return None

    # -- from the threads --------------------------------------------------------------------------
    def _hand(self, item: tuple) -> None:
        """Called from the HTTP threads: queue ``item`` for the loop and wake it."""
        self.intake.put(item)
        try:
            os.write(self._intake_w, b"x")
        except BlockingIOError:
            pass  # already awake

    def _on_intake(self) -> None:
        os.read(self._intake_r, 4096)
        while True:
            try:
                what, *args = self.intake.get_nowait()
            except queue.Empty:
                return
            getattr(self, f"_on_{what}")(*args)

    def _on_updates(self, updates: list) -> None:
        """Take a batch of updates: the journal (with the offset past them) is saved before the poller
        confirms them to Telegram, so a crash at any point loses none and takes none twice."""
        asks, deliveries = [], []
        for update in updates:
            self.count("updates")
            if isinstance(update.get("update_id"), int):
                self.journal.offset = max(self.journal.offset or 0, update["update_id"] + 1)
            message = update.get("message")
            if not isinstance(message, dict):
                continue
            what, payload = read_message(message, self.access, self.targets, self.max_chars)
            if what == "ignore":
                continue
            chat, message_id, user = message["chat"]["id"], message["message_id"], message["from"]["id"]
            key = message_key(chat, message_id)
            if self.journal.knows(key):
                self.count("duplicates")
                continue
            if what == "refuse":
                self.count("refused")
                print(f"{self.name}: refused user {user} in chat {chat}", file=sys.stderr, flush=True)
                payload, what = refusal(user), "say"
            if what == "say":
                self.count("said")
                deliveries.append(self.journal.deliver(key, chat, message_id, payload))
            else:
                job = {"key": key, "chat": chat, "message_id": message_id, **payload}
                self.journal.jobs[key] = job
                asks.append(job)
        self.journal.save()
        self.poller.confirmed(self.journal.offset)
        for job in asks:
            self.count("learnt" if job.get("target") is not None else "asked")
            self._ask(job)
        for delivery in deliveries:
            self.sender.put(delivery)
        self._pace()

    def _on_sent(self, key: str) -> None:
        self.count("sent")
        self.journal.delivered(key)
        self.journal.save()
        self._pace()

    def _on_undeliverable(self, key: str, detail: str) -> None:
        self.reject("undeliverable", f"{key}: {detail}")
        self._on_sent(key)

    def _on_send_retry(self, detail: str, rate_limited: bool) -> None:
        self.count("rate_limited" if rate_limited else "send_retries")

    def _on_poll_error(self, detail: str, fatal: bool) -> None:
        self.count("poll_errors")
        state = f"refused: {detail} (is the token right?)" if fatal else f"retrying: {detail}"
        if state != self.state:
            print(f"{self.name}: getUpdates failed: {detail}", file=sys.stderr, flush=True)
        self.state = state

    def _on_polled(self) -> None:
        self.state = "polling"

    # -- MessengerIn ---------------------------------------------------------------------------------
    def _ask(self, job: dict) -> None:
        request = {"text": job["text"]}
        if job.get("target") is not None:
            request["target"] = job["target"]
        self.client.submit(message_hash_id=job["key"], **request)

    def _on_replies(self) -> None:
        for reply in self.client.results(0):
            job = self.journal.jobs.get(reply.get("message_hash_id"))
            if job is None:
                self.count("late")
                continue
            text = answer_text(job, reply)
            if text is None:  # no network answered before the deadline: ask again, under the same id
                self.count("asked_again")
                self._ask(job)
                continue
            delivery = self.journal.deliver(job["key"], job["chat"], job["message_id"], text)
            self.journal.save()
            self.sender.put(delivery)

    def _pace(self) -> None:
        """Fetch more only while fewer than ``queue`` messages wait."""
        if self.journal.waiting < self.queue_limit:
            self.poller.room.set()
        else:
            self.poller.room.clear()

    def close(self) -> None:
        self.poller.stopping = self.sender.stopping = True
        self.poller.room.set()
        self.client.close()
        os.close(self._intake_r)
        os.close(self._intake_w)
        super().close()


def read_token(settings: dict) -> str:
    """The bot's token from ``token_file`` or ``token_env``; ExtensionError without it (never showing it)."""
    if settings["token_file"]:
        try:
            with open(settings["token_file"]) as f:
                token = f.read().strip()
        except OSError as exc:
            raise ExtensionError(f"cannot read the token file {settings['token_file']}: {exc.strerror}") from None
    else:
        token = os.environ.get(settings["token_env"], "").strip()
    if not token:
        raise ExtensionError(f"no token: set token_file, or the environment variable {settings['token_env']}")
    if any(c.isspace() or c in "/?#%" for c in token):
        raise ExtensionError("the token has spaces or URL characters: it is not a Bot API token")
    return token


class _Poller(threading.Thread):
    """Long-polls getUpdates while the extension has room, and waits for each batch to be journalled
    (:meth:`confirmed`) before it asks for the next: asking with the new offset is what tells Telegram
    that the batch was taken."""

    def __init__(self, api: BotApi, timeout_s: int, hand, timing: tuple[float, float]):
        super().__init__(name="telegram-poll", daemon=True)
        self.api, self.timeout_s, self.hand, self.timing = api, timeout_s, hand, timing
        self.offset: int | None = None
        self.room = threading.Event()
        self.taken = threading.Event()
        self.stopping = False
        self.rng = random.Random()

    def confirmed(self, offset: int | None) -> None:
        self.offset = offset
        self.taken.set()

    def run(self) -> None:
        failures = 0
        while not self.stopping:
            if not self.room.wait(1.0) or self.stopping:
                continue
            try:
                updates = self.api.get_updates(self.offset, self.timeout_s)
            except BotApiError as exc:
                failures += 1
                fatal = exc.code in (401, 404)
                self.hand(("poll_error", str(exc), fatal))
                wait = self.timing[1] if fatal else exc.retry_after or backoff(failures, *self.timing, self.rng)
                self._sleep(wait)
                continue
            if failures:
                self.hand(("polled",))
            failures = 0
            if updates:
                self.taken.clear()
                self.hand(("updates", updates))
                while not self.taken.wait(1.0) and not self.stopping:
                    pass

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))


class _Sender(threading.Thread):
    """Sends the answers as replies, paced (:class:`Pacer`), retried with back-off, honouring retry_after;
    each one sent (or refused for good) is handed back so the journal forgets it."""

    def __init__(self, api: BotApi, pacer: Pacer, hand, timing: tuple[float, float], timeout_s: float):
        super().__init__(name="telegram-send", daemon=True)
        self.api, self.pacer, self.hand, self.timing, self.timeout_s = api, pacer, hand, timing, timeout_s
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.due: list[tuple[float, int, dict, int]] = []
        self.order = itertools.count()
        self.stopping = False
        self.rng = random.Random()

    def put(self, delivery: dict) -> None:
        self.inbox.put(delivery)

    def run(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            wait = min(1.0, self.due[0][0] - now) if self.due else 1.0
            try:
                delivery = self.inbox.get(timeout=max(0.0, wait))
                heapq.heappush(self.due, (self.pacer.ready_at(delivery["chat"]), next(self.order), delivery, 0))
                continue
            except queue.Empty:
                pass
            if self.due and self.due[0][0] <= time.monotonic():
                self._send(*heapq.heappop(self.due)[2:])

    def _send(self, delivery: dict, attempt: int) -> None:
        now = time.monotonic()
        ready = self.pacer.ready_at(delivery["chat"])
        if ready > now:
            heapq.heappush(self.due, (ready, next(self.order), delivery, attempt))
            return
        try:
            self.api.send_message(delivery["chat"], delivery["text"], delivery["reply_to"], self.timeout_s)
        except BotApiError as exc:
            if exc.code in PERMANENT:
                self.hand(("undeliverable", delivery["key"], str(exc)))
                return
            if exc.code == 429:
                retry_at = now + (exc.retry_after if exc.retry_after is not None else self.timing[0])
                self.pacer.pause(retry_at)
            else:
                attempt += 1
                retry_at = now + backoff(attempt, *self.timing, self.rng)
            self.hand(("send_retry", str(exc), exc.code == 429))
            heapq.heappush(self.due, (retry_at, next(self.order), delivery, attempt))
            return
        self.pacer.sent(delivery["chat"], time.monotonic())
        self.hand(("sent", delivery["key"]))
