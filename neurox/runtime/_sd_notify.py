"""systemd's notify protocol, spoken directly: ``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``STOPPING=1``.

A service of ``Type=notify`` tells systemd how it is doing by sending newline-separated
``KEY=VALUE`` assignments, one datagram per message, to the unix socket named in ``$NOTIFY_SOCKET``
(a path, or ``@name`` for Linux's abstract namespace). systemd reads the sender's credentials from
the socket itself, so nothing else is needed; with ``NotifyAccess=main`` only the service's main
process may send. If ``$WATCHDOG_USEC`` is set (and ``$WATCHDOG_PID``, when present, is this
process), systemd expects ``WATCHDOG=1`` at least that often and kills the service otherwise;
sending at half that interval is the documented practice (``sd_watchdog_enabled(3)``).

This is the protocol of ``sd_notify(3)`` in a few lines, rather than a dependency on libsystemd or
a Python binding of it: the agent runs the same with or without systemd (no ``$NOTIFY_SOCKET``:
every call is a no-op), and tests play systemd's side with a datagram socket of their own.
"""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, MutableMapping

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str:
    """The ``sendto`` address of a ``$NOTIFY_SOCKET`` value: a path, or ``@name`` for ``\\0name``.

    Other forms (systemd 254's ``vsock:``) are refused with ValueError: this agent runs on the host.
    """
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET must be an absolute path or @abstract name, got {value!r}")


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` messages (half of ``$WATCHDOG_USEC``), or None if no watchdog
    is asked of process ``pid``."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if environ.get("WATCHDOG_PID", str(pid)) != str(pid):
        return None
    return int(usec) / 2e6


class Notifier:
    """Sends notify messages to systemd; every method is a no-op when there is no socket."""

    def __init__(self, address: str | None, watchdog: float | None = None):
        self.address = address
        self.watchdog = watchdog
        """Seconds between two ``WATCHDOG=1`` (None: no watchdog asked)."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if address else None

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ, unset: bool = True) -> "Notifier":
        """The notifier systemd set up for this process. With ``unset`` (as ``sd_notify``'s
        ``unset_environment``) the variables are removed, so no child process inherits them and
        speaks for the service by mistake."""
        value = environ.get("NOTIFY_SOCKET")
        notifier = cls(socket_address(value) if value else None, watchdog_interval(environ, os.getpid()))
        if unset:
            for name in NOTIFY_VARIABLES:
                environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one message; False (and a line on stderr) if it failed.

        A failure is not fatal for the service: if systemd cannot be told, its own timeouts and the
        watchdog act, which is what they are for. Nor does a reader that does not read stop it: the send
        never waits (a full socket is a failure like any other), where a blocked send held the service's
        loop -- and its polite stop -- for as long as nobody read.
        """
        if self.sock is None:
            return False
        for assignment in assignments:
            if "=" not in assignment or "\n" in assignment:
                raise ValueError(f"a notify assignment is one KEY=VALUE line, got {assignment!r}")
        try:
            self.sock.sendto("\n".join(assignments).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            print(f"sd_notify: cannot reach {self.address!r}: {exc}", file=sys.stderr, flush=True)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog_ping(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
