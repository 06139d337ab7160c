"""Packets for a peer that is not taking them now: kept in order and sent as its socket becomes writable.

A single-threaded loop that serves many peers (the launcher) must never wait on one of them: a peer
that stops reading would hold all the others. What its socket cannot take goes into its outbox,
behind what is already there, and leaves as the loop finds the socket writable; a peer whose outbox
passes ``OUTBOX_MAX_PACKETS`` or ``OUTBOX_MAX_BYTES`` has stopped reading (:func:`stopped_reading`).
"""
from __future__ import annotations

import socket
from collections import deque

OUTBOX_MAX_PACKETS = 50_000
OUTBOX_MAX_BYTES = 8 * 1024 * 1024
"""The most a peer's outbox may hold unsent (beyond the ~200 small packets its unix socket takes): the
launcher's notices for a tree of 2,000 neurons, every one spawned, ready and exited, are 6,000
packets and under 1 MiB, so a peer that reads at all, however slowly, is never this far behind."""


def stopped_reading(packets: int, size: int) -> bool:
    """Whether a peer with ``packets`` packets (``size`` bytes) waiting in its outbox has stopped reading."""
    return packets > OUTBOX_MAX_PACKETS or size > OUTBOX_MAX_BYTES


class Outbox:
    """One peer's packets its socket could not take yet, oldest first."""

    def __init__(self):
        self.packets: deque[bytes] = deque()
        self.size = 0

    def __len__(self) -> int:
        return len(self.packets)

    def send(self, sock: socket.socket, packet: bytes) -> None:
        """Send ``packet`` after those waiting, without waiting; what the socket cannot take now stays.
        Raises the OSError of a socket that is gone (not a full one)."""
        self.packets.append(packet)
        self.size += len(packet)
        if len(self.packets) == 1:
            self.flush(sock)

    def flush(self, sock: socket.socket) -> None:
        """Send what waits, oldest first, until the socket is full or nothing is left."""
        try:
            while self.packets:
                sock.send(self.packets[0], socket.MSG_DONTWAIT)
                self.size -= len(self.packets.popleft())
        except BlockingIOError:
            pass

    @property
    def stuck(self) -> bool:
        return stopped_reading(len(self.packets), self.size)
