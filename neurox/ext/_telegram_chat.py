"""The Telegram messenger's decisions, without I/O: what a message asks, what its answer says, when the
next message may go out, and what must survive a restart (the journal).

Every incoming message is known by ``tg:<chat id>:<message id>``: its key in the journal, and the
``message_hash_id`` of its request to MessengerIn, so that a restarted messenger asks again under the
same id and MessengerIn answers it from its reply cache instead of computing (or learning) it twice.
"""
from __future__ import annotations

import json
import os
import random
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ._samples import InputError, TargetSpace

ANSWERED_KEPT = 10000
"""Keys of messages answered, kept so that a message seen again is never answered twice."""
OUTPUT_SHOWN = 8
"""Values of a regression network's output shown in an answer."""


def message_key(chat: int, message_id: int) -> str:
    return f"tg:{chat}:{message_id}"


@dataclass(frozen=True)
class Access:
    """Who may talk to the network: listed users anywhere, and anyone in a listed chat (a group)."""
    users: frozenset
    chats: frozenset

    def allows(self, user, chat) -> bool:
        return user in self.users or chat in self.chats


def read_message(message: dict, access: Access, targets: TargetSpace, max_chars: int) -> tuple[str, object]:
    """What one Telegram message asks: ``("ask", {"text"})``, ``("learn", {"text", "target", "label"})``,
    ``("say", answer)`` for what is answered without the network (help, mistakes), ``("refuse", None)``
    for someone who is not listed, or ``("ignore", None)`` (not a message to answer: no sender, no chat)."""
    user = (message.get("from") or {}).get("id")
    chat = (message.get("chat") or {}).get("id")
    if not isinstance(user, int) or not isinstance(chat, int) or not isinstance(message.get("message_id"), int):
        return "ignore", None
    if not access.allows(user, chat):
        return "refuse", None
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return "say", "I only read text messages."
    if len(text) > max_chars:
        return "say", f"That is {len(text)} characters; I read at most {max_chars}."
    words = text.split(maxsplit=2)
    command = words[0].split("@", 1)[0].lower() if words[0].startswith("/") else None
    if command is None:
        return "ask", {"text": text}
    if command in ("/help", "/start"):
        return "say", help_text(targets)
    if command == "/learn":
        if len(words) < 3:
            return "say", "Usage: /learn LABEL text, for example /learn " + _example_label(targets) + " some text"
        try:
            target = targets.parse(words[1])
        except InputError as exc:
            return "say", f"I cannot learn that: {exc.detail}."
        return "learn", {"text": words[2], "target": target, "label": words[1]}
    return "say", f"I do not know {command}; /help lists what I understand."


def help_text(targets: TargetSpace) -> str:
    return ("Send me any text and I answer what the network makes of it.\n"
            f"/learn LABEL text - teach it that the text is a LABEL, for example /learn {_example_label(targets)} ...\n"
            f"Labels: {targets.describe()}.\n/help - this text")


def _example_label(targets: TargetSpace) -> str:
    return next(iter(targets.labels), "0") if targets.classification else "[0.5, 1.0]"


def answer_text(job: dict, reply: dict) -> str | None:
    """The chat answer to a final reply of MessengerIn; None when the request should be sent again (no
    network answered it before the client's deadline: the network is down, nothing is lost)."""
    if not reply.get("ok"):
        if reply.get("error") == "deadline":
            return None
        return f"Sorry, the network could not answer that ({reply.get('error')}: {reply.get('detail')})."
    if "text" in reply:
        said = str(reply["text"])
    elif "label" in reply:
        said = str(reply["label"])
    else:
        output = np.asarray(reply.get("output") or [], dtype=float)
        said = "[" + ", ".join(f"{v:.3g}" for v in output[:OUTPUT_SHOWN]) + (", ...]" if output.size > OUTPUT_SHOWN
                                                                              else "]")
    if job.get("target") is not None:
        return f"Learnt: {job['label']}. (Before this, I would have said: {said}.)"
    return said


class Pacer:
    """Telegram's limits on a bot's messages: at most ``rate`` a second in all and one per ``chat_interval_s``
    in each chat; after a 429 nothing goes out until its ``retry_after`` is over."""

    def __init__(self, rate: float, chat_interval_s: float):
        self.interval = 1.0 / rate
        self.chat_interval_s = chat_interval_s
        self.next_any = 0.0
        self.next_in: dict[int, float] = {}

    def ready_at(self, chat: int) -> float:
        return max(self.next_any, self.next_in.get(chat, 0.0))

    def sent(self, chat: int, now: float) -> None:
        self.next_any = max(self.next_any, now + self.interval)
        self.next_in[chat] = now + self.chat_interval_s
        if len(self.next_in) > 10000:
            self.next_in = {c: t for c, t in self.next_in.items() if t > now}

    def pause(self, until: float) -> None:
        self.next_any = max(self.next_any, until)


def backoff(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): doubling from ``base_s`` up to ``max_s``, with equal
    jitter (between half and all of it)."""
    wait = min(max_s, base_s * 2 ** (attempt - 1))
    return wait / 2 + rng.random() * wait / 2


class Journal:
    """What survives a restart, in one JSON file replaced atomically: the ``offset`` of the next update to
    fetch, the ``jobs`` (messages taken, waiting for the network), the ``deliveries`` (answers waiting to
    be sent) and the keys of the messages ``answered`` lately. The offset is saved together with the
    jobs it took before Telegram is told (by the next getUpdates) that they were taken."""

    def __init__(self, path: str):
        self.path = path
        self.offset: int | None = None
        self.jobs: dict[str, dict] = {}
        self.deliveries: dict[str, dict] = {}
        self.answered: OrderedDict[str, None] = OrderedDict()
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        self.offset = doc.get("offset")
        self.jobs = dict(doc.get("jobs") or {})
        self.deliveries = dict(doc.get("deliveries") or {})
        self.answered = OrderedDict.fromkeys(doc.get("answered") or [])

    def knows(self, key: str) -> bool:
        return key in self.jobs or key in self.deliveries or key in self.answered

    def deliver(self, key: str, chat: int, reply_to: int | None, text: str) -> dict:
        """The job ``key`` (if any) becomes a delivery of ``text``."""
        self.jobs.pop(key, None)
        self.deliveries[key] = delivery = {"key": key, "chat": chat, "reply_to": reply_to, "text": text}
        return delivery

    def delivered(self, key: str) -> None:
        self.deliveries.pop(key, None)
        self.answered[key] = None
        while len(self.answered) > ANSWERED_KEPT:
            self.answered.popitem(last=False)

    @property
    def waiting(self) -> int:
        return len(self.jobs) + len(self.deliveries)

    def save(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"offset": self.offset, "jobs": self.jobs, "deliveries": self.deliveries,
                       "answered": list(self.answered)}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
