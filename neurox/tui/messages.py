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


@dataclass
class ScalingState(Message):
    """MessengerIn's ``scaling`` answer, or None when it did not give one."""

    answer: dict | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ScalingState)
