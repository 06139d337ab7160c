"""Messages the observer worker posts to the UI (dataclasses in one module, as Textual apps do)."""
from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from ._observer import ProcessRow


@dataclass
class TreeSnapshot(Message):
    """A fresh view of every process; later snapshots replace earlier ones."""

    rows: list[ProcessRow]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TreeSnapshot)  # only the newest view matters


@dataclass
class NetworkEvent(Message):
    event: dict


@dataclass
class ObserverTrouble(Message):
    text: str
