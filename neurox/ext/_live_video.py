"""A live video stream for the eye: a URL PyAV opens (``rtsp://``, ``http://``, ``udp://``, ``tcp://``, ...)
or a named pipe a video is written into, decoded frame by frame at the eye's ``fps``.

Opening and reading a stream block (on the network, or on a pipe until a writer comes), so the decoding
runs in a thread of its own, as the directory watch does (``_watch``): it hands the frames it takes over
through a bounded buffer (``live_buffer`` frames; when the network is slower than the stream the oldest
are dropped, counted ``dropped_frames``, so memory stays bounded however long the stream runs) and
writes a byte to a pipe the eye's loop watches. The frames are bounded in pixels as images are
(``max_pixels``: a larger frame is one ``too_large`` error, the stream goes on). A stream that cannot be
opened, ends, or stays silent for ``live_timeout_s`` is opened again after a back-off that doubles from
``reconnect_s`` to ``reconnect_max_s`` and starts anew once frames flow. A named pipe that does not
exist yet is waited for (looked for every ``reconnect_s``). Frames are tagged with their number since
the eye started: ``0``, ``1``, ...

The thread stops within :data:`STOP_POLL_S` when the eye does, but for a URL blocked inside FFmpeg,
which gives up within ``live_timeout_s`` (PyAV offers no other way in); it then ends on its own.
"""
from __future__ import annotations

import os
import select
import stat
import threading
import time
from collections import deque
from typing import Callable

from ._images import ImageSpec, image_row
from ..runtime import WakePipe
from ._samples import InputError
from ._settings import Setting
from ._video import VideoSpec, av, rate_gate, rate_restart

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp")
LIVE_SETTINGS = {
    "pipe": Setting("what a named pipe carries: 'images' (concatenated PNG or PGM/PPM/PBM images) or 'video' "
                    "(a video stream, e.g. MPEG-TS, read live; waited for if it does not exist yet)", "images",
                    choices=("images", "video")),
    "reconnect_s": Setting("first wait before a live stream that failed or ended is opened again; it doubles "
                           "at each failure", 0.5, "float", minimum=0.01),
    "reconnect_max_s": Setting("the longest wait between two tries to open a live stream", 30.0, "float",
                               minimum=0.01),
    "live_timeout_s": Setting("a live stream that cannot be opened or stays silent this long is dropped and "
                              "opened again", 10.0, "float", minimum=0.1),
    "live_buffer": Setting("decoded frames of a live stream kept for the network at most; the oldest are "
                           "dropped when it is full (dropped_frames)", 32, "int", minimum=1),
}
"""The eye's settings for live video."""
STOP_POLL_S = 0.1
"""How often a wait on a named pipe looks whether the eye stops."""
JOIN_S = 1.0
"""How long closing waits for the thread (a URL's may be inside FFmpeg up to ``live_timeout_s``)."""


def is_url(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in LIVE_SCHEMES


def is_live(path: str, pipe: str) -> bool:
    """A live video stream: a URL PyAV opens, or, with ``pipe = "video"``, a named pipe -- or nothing yet
    (the pipe is waited for)."""
    if is_url(path):
        return True
    if pipe != "video":
        return False
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def next_backoff(delay: float, settings: dict) -> float:
    """The wait after ``delay`` when the stream fails again: doubled, at most ``reconnect_max_s``."""
    return min(delay * 2.0, settings["reconnect_max_s"])


class NoPipe(Exception):
    """The named pipe is not there (yet), or is something else."""


class FifoReader:
    """A named pipe as the file PyAV reads: each read waits for data in slices of :data:`STOP_POLL_S` (so a
    stop is seen), as long as it takes for the first writer, at most ``timeout_s`` once one has written
    (then TimeoutError); ``b""`` when the writer closes the pipe."""

    def __init__(self, path: str, timeout_s: float, stopped: threading.Event):
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NoPipe(f"no named pipe {path} yet") from None
        except OSError as exc:
            raise NoPipe(f"{path}: {exc.strerror or exc}") from None
        if not stat.S_ISFIFO(os.fstat(self.fd).st_mode):  # what was opened, not what was there a moment before
            os.close(self.fd)
            raise NoPipe(f"{path} is not a named pipe")
        self.timeout_s, self.stopped, self.heard = timeout_s, stopped, False
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)

    def read(self, n: int) -> bytes:
        quiet_since = time.monotonic()
        while not self.stopped.is_set():
            if self.poller.poll(STOP_POLL_S * 1000):
                try:
                    data = os.read(self.fd, n)
                except BlockingIOError:
                    continue
                self.heard = self.heard or bool(data)
                return data
            if self.heard and time.monotonic() - quiet_since > self.timeout_s:
                raise TimeoutError(f"silent for {self.timeout_s:g} s")
        return b""

    def close(self) -> None:
        os.close(self.fd)


class LiveVideo:
    """Frames of a live stream, decoded in a thread: readability of :attr:`fd` says some came; :meth:`take`
    gives them, one (tag, row) or InputError at a time."""

    def __init__(self, path: str, settings: dict, video: VideoSpec, image: ImageSpec,
                 log: Callable[[str], None] = lambda text: None):
        if av is None:
            raise InputError("bad_video", "PyAV is not installed: pip install 'neurox[video]'")
        self.path, self.settings, self.video, self.image, self.log = path, settings, video, image, log
        self.wakeup = WakePipe()
        self.fd = self.wakeup.fd
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self.taken = self.decoded = self.dropped = self.connections = 0
        self.state = "connecting"
        self._thread = threading.Thread(target=self._run, name="eye-live", daemon=True)
        self._thread.start()

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        """Open the stream, read it, and again after a back-off, until the eye stops; each new reason it
        stops for is logged once (a stream down for hours is one line, not one a try)."""
        delay, logged = self.settings["reconnect_s"], None
        while not self._stop.is_set():
            wait = None
            try:
                why, flowed = self._session()
            except NoPipe as exc:  # looked for again every reconnect_s, without a back-off
                why, flowed, wait = f"waiting: {exc}", False, self.settings["reconnect_s"]
            except Exception as exc:  # noqa: BLE001 -- a stream PyAV chokes on must not end the thread unseen
                why, flowed = f"failed ({type(exc).__name__}: {exc})", False
            if self._stop.is_set():
                return
            if why != logged or flowed:
                self.log(f"{self.path}: {why}")
                logged = why
            if wait is None:
                wait = delay = self.settings["reconnect_s"] if flowed else delay
                delay = next_backoff(delay, self.settings)
                why = f"reconnecting in {wait:g} s: {why}"
            self.state = why
            self._signal()
            self._stop.wait(wait)

    def _session(self) -> tuple[str, bool]:
        """Open the stream and read it to its end: why it ended, and whether it gave frames."""
        timeout = self.settings["live_timeout_s"]
        reader = None if is_url(self.path) else FifoReader(self.path, timeout, self._stop)
        try:
            if reader is not None:
                self.state = "waiting for the stream"
            container = av.open(self.path, timeout=(timeout, timeout)) if reader is None else av.open(reader)
        except Exception as exc:  # noqa: BLE001 -- FFmpeg's errors, OSError, and whatever else: the pipe is closed
            if reader is not None:
                reader.close()
            return f"cannot be opened ({exc})", False
        decoded = self.decoded
        try:
            self.connections += 1
            self.state = "reading"
            self._read(container)
            return "the stream ended", self.decoded > decoded
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            return f"broke off ({exc})", self.decoded > decoded
        finally:
            container.close()
            if reader is not None:
                reader.close()

    def _read(self, container) -> None:
        """Decode until the stream ends (or the eye stops)."""
        if not container.streams.video:
            raise ValueError("it holds no video stream")
        step = 1.0 / self.video.fps if self.video.fps else 0.0
        next_t, last_t, started = 0.0, None, time.monotonic()
        for frame in container.decode(container.streams.video[0]):
            if self._stop.is_set():
                break
            self.decoded += 1
            t = float(frame.time) if frame.time is not None else time.monotonic() - started
            next_t, last_t = rate_restart(t, last_t, next_t), t
            taken = rate_gate(t, next_t, step)
            if taken is None:
                continue
            next_t = taken
            if frame.width * frame.height > self.image.max_pixels:
                self._hand(InputError("too_large", f"a frame of {frame.width}x{frame.height} pixels is more than "
                                                   f"max_pixels ({self.image.max_pixels})"))
                continue
            self._hand((self.taken, image_row(frame.to_image(), self.image)))
            self.taken += 1

    def _hand(self, item) -> None:
        with self._lock:
            if len(self._items) >= self.settings["live_buffer"]:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
        self._signal()

    def _signal(self) -> None:
        with self._lock:
            if not self._closed:  # else the eye is gone (a URL's thread ending after it)
                self.wakeup.wake()

    # -- the eye's loop ----------------------------------------------------------------------------
    def take(self):
        """The oldest frame handed over -- (tag, row), or an InputError -- or None."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def drain(self) -> None:
        self.wakeup.drain()

    def status(self) -> dict:
        return {"live": self.state, "connections": self.connections, "dropped_frames": self.dropped}

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread (a URL's may end later, within ``live_timeout_s``: it then touches nothing)."""
        self._stop.set()
        self._thread.join(timeout=JOIN_S)
        with self._lock:
            self._closed = True
            self.wakeup.close()
