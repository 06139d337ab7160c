"""A live video stream for the eye: a URL PyAV opens (``rtsp://``, ``http://``, ``udp://``, ``tcp://``, ...)
or a named pipe a video is written into, decoded frame by frame at the eye's ``fps``.

Opening and reading a stream block (on the network, or on a pipe until a writer comes), so the decoding
runs in a thread of its own, as the directory watch does (``_watch``): it hands the frames it takes over
through a bounded buffer (``live_buffer`` frames; when the network is slower than the stream the oldest
are dropped, counted ``dropped_frames``, so memory stays bounded however long the stream runs) and
writes a byte to a pipe the eye's loop watches. The frames are bounded in pixels as images are
(``max_pixels``: a larger frame is one ``too_large`` error, the stream goes on). A stream that cannot be
opened, ends, or stays silent for ``live_timeout_s`` is opened again after a back-off that doubles from
``reconnect_s`` to ``reconnect_max_s`` and starts anew once frames flow. Frames are tagged with their
number since the eye started: ``0``, ``1``, ...
"""
from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque

from ._images import ImageSpec, image_row
from ._samples import InputError
from ._settings import Setting
from ._video import VideoSpec, av, rate_gate

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp")
LIVE_SETTINGS = {
    "pipe": Setting("what a named pipe carries: 'images' (concatenated PNG or PGM/PPM/PBM images) or 'video' "
                    "(a video stream, e.g. MPEG-TS, read live)", "images", choices=("images", "video")),
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


def is_url(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in LIVE_SCHEMES


def is_live(path: str, pipe: str) -> bool:
    """A live video stream: a URL PyAV opens, or a named pipe said to carry video (``pipe = "video"``)."""
    if is_url(path):
        return True
    try:
        return pipe == "video" and stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def next_backoff(delay: float, settings: dict) -> float:
    """The wait after ``delay`` when the stream fails again: doubled, at most ``reconnect_max_s``."""
    return min(delay * 2.0, settings["reconnect_max_s"])


class LiveVideo:
    """Frames of a live stream, decoded in a thread: readability of :attr:`fd` says some came; :meth:`take`
    gives them, one (tag, row) or InputError at a time."""

    def __init__(self, path: str, settings: dict, video: VideoSpec, image: ImageSpec):
        if av is None:
            raise InputError("bad_video", "PyAV is not installed: pip install 'neurox[video]'")
        self.path, self.settings, self.video, self.image = path, settings, video, image
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.taken = self.dropped = self.connections = 0
        self.state = "connecting"
        self._thread = threading.Thread(target=self._run, name="eye-live", daemon=True)
        self._thread.start()

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.settings["reconnect_s"]
        while not self._stop.is_set():
            why, flowed = "the stream ended", False
            try:
                timeout = self.settings["live_timeout_s"]
                container = av.open(self.path, timeout=None if not is_url(self.path) else (timeout, timeout))
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                why = f"cannot be opened ({exc})"
            else:
                try:
                    self.connections += 1
                    self.state = "reading"
                    flowed = self._read(container)
                except (av.error.FFmpegError, OSError, ValueError) as exc:
                    why = f"broke off ({exc})"
                finally:
                    container.close()
            if self._stop.is_set():
                return
            delay = self.settings["reconnect_s"] if flowed else delay
            self.state = f"reconnecting in {delay:g} s: {why}"
            self._signal()
            self._stop.wait(delay)
            delay = next_backoff(delay, self.settings)

    def _read(self, container) -> bool:
        """Decode until the stream ends (or the eye stops); True if it gave frames."""
        if not container.streams.video:
            raise ValueError("it holds no video stream")
        step = 1.0 / self.video.fps if self.video.fps else 0.0
        next_t, started, flowed = 0.0, time.monotonic(), False
        for frame in container.decode(container.streams.video[0]):
            if self._stop.is_set():
                break
            flowed = True
            t = float(frame.time) if frame.time is not None else time.monotonic() - started
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
        return flowed

    def _hand(self, item) -> None:
        with self._lock:
            if len(self._items) >= self.settings["live_buffer"]:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
        self._signal()

    def _signal(self) -> None:
        try:
            os.write(self._w, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the loop has news to see already

    # -- the eye's loop ----------------------------------------------------------------------------
    def take(self):
        """The oldest frame handed over -- (tag, row), or an InputError -- or None."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def status(self) -> dict:
        return {"live": self.state, "connections": self.connections, "dropped_frames": self.dropped}

    def close(self) -> None:
        self._stop.set()
        if not is_url(self.path):
            self._release_pipe()
        self._thread.join(timeout=2.0)
        os.close(self.fd)
        os.close(self._w)

    def _release_pipe(self) -> None:
        """Open the named pipe for writing, so a thread waiting for a writer wakes, reads its end and stops."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader waiting (ENXIO), or the pipe is gone
