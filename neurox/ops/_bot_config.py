"""The Telegram bot's configuration (its TOML file, typed) and the log formatter that keeps its token secret."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Annotated

import msgspec

from ..ext import DEFAULT_API_URL, TOKEN_ENV
from ..runtime import ConfigError, read_toml, typed


class BotConfigError(ConfigError):
    """A bot config that cannot be used (the message names the file and the key)."""


class BotDoc(msgspec.Struct, forbid_unknown_fields=True):
    """The schema of the bot's config (see BotConfig)."""

    users: list[int] = []
    """Telegram user ids (integers)."""
    operators: list[int] = []
    token_file: str | None = None
    api_url: str | None = None
    data_dir: str | None = None
    poll_timeout_s: Annotated[int, msgspec.Meta(ge=0, le=600)] = 30


@dataclass(frozen=True)
class BotConfig:
    """The bot's TOML config::

        users = [11111111, 22222222]        # Telegram user ids that may ask (/neuron_status, ...)
        operators = [11111111]              # who may also /kill and /mode (operators may ask too)
        token_file = "/etc/neurox/telegram.token"   # else the token is taken from $NEUROX_TELEGRAM_TOKEN
        api_url = "https://api.telegram.org"        # the Bot API's base URL (default)
        data_dir = "/var/lib/neurox/diamond"        # the network (its run.json); --data-dir overrides
        poll_timeout_s = 30                          # getUpdates long-polling timeout
    """

    users: frozenset[int]
    operators: frozenset[int] = frozenset()
    token_file: str | None = None
    api_url: str = DEFAULT_API_URL
    data_dir: str | None = None
    poll_timeout_s: int = 30

    @classmethod
    def load(cls, path: str) -> "BotConfig":
        try:
            doc = read_toml(path)
        except ConfigError as exc:
            raise BotConfigError(str(exc)) from None
        return cls.from_mapping(doc, path, os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_mapping(cls, doc: dict, where: str = "bot config", base: str = ".") -> "BotConfig":
        try:
            typed(BotDoc, doc, where)
        except ConfigError as exc:
            raise BotConfigError(str(exc)) from None
        if not doc.get("users") and not doc.get("operators"):
            raise BotConfigError(f"{where}: users (or operators) must list at least one Telegram user id")
        api_url = doc.get("api_url", DEFAULT_API_URL).rstrip("/")
        if not api_url.startswith(("http://", "https://")):
            raise BotConfigError(f"{where}: api_url must start with http:// or https://")
        paths = {k: os.path.join(base, doc[k]) for k in ("token_file", "data_dir") if k in doc}
        operators = frozenset(doc.get("operators", []))
        return cls(**{**doc, **paths, "users": frozenset(doc.get("users", [])) | operators, "operators": operators,
                      "api_url": api_url})

    def token(self) -> str:
        """The bot's token, from ``token_file`` or the environment (never logged)."""
        if self.token_file:
            try:
                with open(self.token_file) as f:
                    token = f.read().strip()
            except OSError as exc:
                raise BotConfigError(f"cannot read the token file {self.token_file}: {exc.strerror}") from None
            where = f"the token file {self.token_file}"
        else:
            token = os.environ.get(TOKEN_ENV, "").strip()
            where = f"${TOKEN_ENV}"
        if not token:
            raise BotConfigError(f"no token: set token_file in the config, or {TOKEN_ENV}")
        if any(c.isspace() or c in "/?#%" for c in token):
            raise BotConfigError(f"{where} does not hold a Bot API token (it has spaces or URL characters)")
        return token


class RedactingFormatter(logging.Formatter):
    """Formats a record, then blanks every secret in the whole text (message, arguments, traceback)."""

    def __init__(self, fmt: str, secrets: list[str]):
        super().__init__(fmt)
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "[token]")
        return text
