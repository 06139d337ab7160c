"""A wake-up pipe: how a thread or a signal wakes a process's loop blocked in a poll or a select."""
from __future__ import annotations

import os
import signal


class WakePipe:
    """A way to wake a loop that watches :attr:`fd` like any other source: a thread calls :meth:`wake`, or
    a signal does once :meth:`catch_signals` has made the pipe Python's wake-up fd; :meth:`drain` takes
    the pending wake-ups. A full pipe already holds a wake-up, so waking never blocks."""

    def __init__(self):
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self._w, b"!")
        except BlockingIOError:
            pass

    def catch_signals(self) -> None:
        """Signals write to this pipe (``signal.set_wakeup_fd``): a loop blocked in a poll wakes at once."""
        signal.set_wakeup_fd(self._w)

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._w)
