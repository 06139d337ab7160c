"""Being told when something changes under a path: inotify (through ``watchfiles``) instead of polling.

``watchfiles`` blocks while it waits, so it runs in a thread of its own that writes one byte to a pipe on
every batch of changes; the extension's loop watches the pipe's read end like any other source, so the
loop itself never blocks nor polls the disk. Where inotify cannot be used (``watchfiles`` missing, too
many watches, a file system without it), :attr:`DirectoryWatch.failed` says why and the caller polls.
"""
from __future__ import annotations

import threading

from ..runtime import WakePipe

DEBOUNCE_MS = 50
"""Changes closer together than this are reported as one batch (a file being written is many changes)."""


class DirectoryWatch:
    """Changes under ``path`` (recursively), as readability of :attr:`fd`; :meth:`drain` reads them."""

    def __init__(self, path: str):
        self.path = path
        self.failed: str | None = None
        self.wakeup = WakePipe()
        self.fd = self.wakeup.fd
        self._stop = threading.Event()
        try:
            import watchfiles
        except ImportError as exc:  # an install without it: the caller polls
            self.failed = f"watchfiles is not installed ({exc})"
            self._thread = None
            return
        self._thread = threading.Thread(target=self._run, args=(watchfiles,), name="eye-watch", daemon=True)
        self._thread.start()

    def _run(self, watchfiles) -> None:
        try:
            for _ in watchfiles.watch(self.path, watch_filter=None, debounce=DEBOUNCE_MS, step=DEBOUNCE_MS,
                                      stop_event=self._stop, rust_timeout=1000, raise_interrupt=False,
                                      force_polling=False):
                self.wakeup.wake()
        except Exception as exc:  # noqa: BLE001 -- whatever stops inotify, the eye goes on by polling
            self.failed = f"{self.path}: {type(exc).__name__}: {exc}"
            self.wakeup.wake()

    def drain(self) -> None:
        """Take the pending notices (what changed is found by a scan, which also settles new files)."""
        self.wakeup.drain()

    @property
    def alive(self) -> bool:
        return self.failed is None and self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.wakeup.close()
