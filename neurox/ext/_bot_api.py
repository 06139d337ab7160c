"""The Telegram Bot API, as JSON over HTTP with the standard library's urllib: the methods NeuroX's two
bots use (``getUpdates`` with an offset and a long-poll timeout, ``sendMessage``), at a configurable
base URL so that a local Bot API server (or a test's stand-in) can take Telegram's place.

The token is only ever part of the request URLs; no error raised here contains it. Shared by the
operators' chat-ops bot (``neurox.ops``) and the Telegram messenger extension (``neurox.ext.telegram``).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

TOKEN_ENV = "NEUROX_TELEGRAM_TOKEN"
DEFAULT_API_URL = "https://api.telegram.org"
MESSAGE_LIMIT = 4000
"""Telegram takes 4096 characters per message; answers are cut a little before that."""


class BotApiError(Exception):
    """The Bot API answered with an error (``code`` is its HTTP status; 0 when it could not be reached)."""

    def __init__(self, code: int, description: str, retry_after: float | None = None):
        super().__init__(f"{code} {description}" if code else description)
        self.code, self.description, self.retry_after = code, description, retry_after


class BotApi:
    """The Bot API methods the bots use."""

    def __init__(self, base_url: str, token: str):
        self._prefix = f"{base_url.rstrip('/')}/bot{token}/"

    def call(self, method: str, payload: dict, timeout: float = 10.0):
        request = urllib.request.Request(self._prefix + method, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            answer = _json(body)
            retry = (answer.get("parameters") or {}).get("retry_after")
            raise BotApiError(exc.code, str(answer.get("description") or exc.reason),
                              retry if isinstance(retry, (int, float)) else None) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out: the URL is not in these
            raise BotApiError(0, f"the Bot API could not be reached ({getattr(exc, 'reason', exc)})") from None
        answer = _json(body)
        if not answer.get("ok"):
            raise BotApiError(int(answer.get("error_code") or 0), str(answer.get("description") or "not ok"))
        return answer.get("result")

    def get_updates(self, offset: int | None, timeout: int) -> list[dict]:
        payload = {"timeout": timeout, "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        result = self.call("getUpdates", payload, timeout=timeout + 10)
        return result if isinstance(result, list) else []

    def send_message(self, chat_id: int, text: str, reply_to: int | None = None, timeout: float = 10.0) -> None:
        payload = {"chat_id": chat_id, "text": text[:MESSAGE_LIMIT]}
        if reply_to is not None:
            payload["reply_to_message_id"] = reply_to
            payload["allow_sending_without_reply"] = True
        self.call("sendMessage", payload, timeout)


def refusal(user) -> str:
    """What a bot says to someone who is not on its list."""
    return ("Sorry, this bot only answers the people its network's operators have listed. "
            f"If you should have access, give them your Telegram user id: {user}.")


def _json(body: bytes) -> dict:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {"ok": False, "description": "the Bot API answered something that is not JSON"}
    return answer if isinstance(answer, dict) else {"ok": False, "description": "the Bot API answered a non-object"}
