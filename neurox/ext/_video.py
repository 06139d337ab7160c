"""Video for the eye: a video file decoded with PyAV (FFmpeg), frame by frame, at a chosen rate.

Every frame taken becomes a sample exactly as an image file does (grey or RGB, resized to the eye's
``size``, scaled to [0, 1]; ``_images.image_row``), tagged ``<path under the eye's path>#<frame
number>``. A video is bounded like an image: its file size (``max_video_bytes``), the pixels of its
frames (the eye's ``max_pixels``, checked on every frame: the size may change mid-video), and also
the frames (``max_frames``) and the seconds of video (``max_seconds``) taken from it. Frames are
decoded only as the eye's queue takes them, a few at each turn of its loop, so a long video neither
fills memory nor keeps answers and control requests waiting. A file that is not a video, or whose
frames cannot be decoded, is one ``bad_video`` error (the frames before the damage were taken); the
eye goes on with its next file. Where a video is (its first frame not yet sent) is saved as it goes
(``_offsets.SavedPlaces``), so an eye killed mid-video resumes it there when it restarts.

PyAV is an optional dependency (``pip install 'neurox[video]'``); without it a video is refused
(``bad_video``, saying so) and images work as before.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from ._images import ImageSpec, image_row
from ._offsets import SavedPlaces
from ._samples import InputError, Sample
from ._settings import Setting

try:
    import av
except ImportError:  # the optional extra 'video'
    av = None

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".ogv")
VIDEO_SETTINGS = {
    "fps": Setting("video frames taken per second of video (0: every frame)", 1.0, "float", minimum=0),
    "max_frames": Setting("frames taken from one video at most", 10000, "int", minimum=1),
    "max_seconds": Setting("seconds of one video read at most", 3600.0, "float", minimum=0.001),
    "max_video_bytes": Setting("larger video files are refused (too_large)", 4 << 30, "int", minimum=1),
    "video_suffixes": Setting("file names ending so are read as videos (with PyAV), not images",
                              list(VIDEO_SUFFIXES), "strings"),
}
"""The eye's settings for video."""
EPSILON_S = 1e-6


@dataclass(frozen=True)
class VideoSpec:
    fps: float = 1.0
    max_frames: int = 10000
    max_seconds: float = 3600.0
    max_bytes: int = 4 << 30
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES

    @classmethod
    def from_settings(cls, settings: dict) -> "VideoSpec":
        return cls(settings["fps"], settings["max_frames"], settings["max_seconds"], settings["max_video_bytes"],
                   tuple(s.lower() for s in settings["video_suffixes"]))


def rate_gate(t: float, next_t: float, step: float) -> float | None:
    """Whether a frame at ``t`` seconds is taken at one frame every ``step`` seconds (0: every frame), the
    next being due at ``next_t``: None if not, else when the one after it is due (after a gap in the
    video, the rate goes on from here)."""
    if t + EPSILON_S < next_t:
        return None
    next_t += step
    while step and next_t <= t + EPSILON_S:
        next_t += step
    return next_t


def rate_restart(t: float, last_t: float | None, next_t: float) -> float:
    """When the next frame is due, given that the frame before this one was at ``last_t``: if the stream's
    clock went back (a source restarted, a timestamp wrapped), the rate starts again from ``t`` rather
    than skipping every frame until the clock catches up."""
    return t if last_t is not None and t < last_t else next_t


class VideoFrames:
    """The frames of one video file, decoded as they are asked for (:meth:`next`); from frame ``start`` on
    when resumed (the frames before it are decoded and chosen at the rate again, not converted)."""

    def __init__(self, path: str, name: str, video: VideoSpec, image: ImageSpec, start: int = 0):
        if av is None:
            raise InputError("bad_video", "PyAV is not installed: pip install 'neurox[video]'")
        size = os.path.getsize(path)
        if size > video.max_bytes:
            raise InputError("too_large", f"{size} bytes is more than max_video_bytes ({video.max_bytes})")
        self.name, self.video, self.image, self.start = name, video, image, start
        try:
            self.container = av.open(path)
        except (av.error.FFmpegError, ValueError) as exc:
            raise InputError("bad_video", f"not a video PyAV can read ({exc})") from None
        if not self.container.streams.video:
            self.close()
            raise InputError("bad_video", "it holds no video stream")
        stream = self.container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > image.max_pixels:
            self.close()
            raise InputError("too_large", f"{width}x{height} pixels is more than max_pixels ({image.max_pixels})")
        self.frames = self.container.decode(stream)
        self.decoded = self.taken = 0
        self.next_t, self.last_t = 0.0, None

    def next(self) -> tuple[str, object] | None:
        """(tag, row) of the next frame taken; None at the end (or at a bound); InputError when the rest
        cannot be decoded (``bad_video``) or a frame has more than ``max_pixels`` (``too_large``: the size
        changed mid-video; it is not converted)."""
        step = 1.0 / self.video.fps if self.video.fps else 0.0
        while self.taken < self.video.max_frames:
            try:
                frame = next(self.frames, None)
            except (av.error.FFmpegError, ValueError) as exc:
                raise InputError("bad_video", f"frame {self.decoded} cannot be decoded ({exc})") from None
            if frame is None:
                return None
            index, self.decoded = self.decoded, self.decoded + 1
            t = float(frame.time) if frame.time is not None else self.next_t
            if t > self.video.max_seconds:
                return None
            self.next_t, self.last_t = rate_restart(t, self.last_t, self.next_t), t
            taken = rate_gate(t, self.next_t, step)
            if taken is None:
                continue  # between two frames taken at the chosen rate
            self.next_t = taken
            self.taken += 1
            if frame.width * frame.height > self.image.max_pixels:
                raise InputError("too_large", f"frame {index} is {frame.width}x{frame.height} pixels, more than "
                                              f"max_pixels ({self.image.max_pixels})")
            if index >= self.start:
                return f"{self.name}#{index}", image_row(frame.to_image(), self.image)
        return None

    def close(self) -> None:
        self.container.close()


def first_pending(pending, name: str) -> int | None:
    """The frame number of the first sample of video ``name`` still waiting in a queue (None: none)."""
    prefix = f"{name}#"
    for sample in pending:
        if isinstance(sample.tag, str) and sample.tag.startswith(prefix):
            return int(sample.tag[len(prefix):])
    return None


class VideoInput:
    """The eye's video at hand: :meth:`open` one, then :meth:`pump` its frames into the eye's queue.

    With ``places`` (the eye remembers), where each video is -- its first frame not yet sent -- is saved
    as it goes, so a restarted eye resumes a video there (sending again at most a second's frames) and
    not from its start; ``done(key)`` is called once a video's frames are all sent (or it broke off)."""

    def __init__(self, settings: dict, image: ImageSpec, places: SavedPlaces | None = None,
                 done: Callable[[tuple], None] = lambda key: None):
        self.spec = VideoSpec.from_settings(settings)
        self.image, self.places, self.done = image, places, done
        self.current: VideoFrames | None = None
        self.target = self.key = self.path = None
        self.finishing: dict[str, tuple[tuple, str]] = {}
        """Videos read to their end whose last frames still wait in the queue: name -> (key, path)."""

    def handles(self, name: str) -> bool:
        return name.lower().endswith(self.spec.suffixes)

    @property
    def busy(self) -> bool:
        return self.current is not None

    def open(self, path: str, name: str, target, key: tuple = ()) -> int:
        """Start reading a video (InputError if it cannot be), at its saved place if it has one (the
        frame it starts at is returned); its frames are taken by :meth:`pump`."""
        place = self.places.get(name, path) if self.places is not None else None
        start = int(place.get("frame", 0)) if place else 0
        self.current = VideoFrames(path, name, self.spec, self.image, start)
        self.target, self.key, self.path = target, key, path
        return start

    def pump(self, eye, budget_s: float) -> bool:
        """Offer frames while ``eye`` (a SampleInput) has room and ``budget_s`` lasts; True if the video has
        frames left. A video that breaks off is rejected once (``bad_video``) and closed."""
        started = time.monotonic()
        while self.current is not None and eye.room > 0:
            if time.monotonic() - started > budget_s:
                break
            try:
                item = self.current.next()
            except InputError as exc:
                eye.reject(exc.error, f"{self.current.name}: {exc.detail} (after {self.current.taken} frames)")
                self._end(eye.pending, finished=False)
                return False
            if item is None:
                eye.count("videos")
                self._end(eye.pending, finished=True)
                return False
            eye.offer(Sample(item[1], self.target, item[0]))
            eye.count("frames")
        self.tend(eye.pending)
        return self.current is not None and eye.room > 0

    def tend(self, pending, force: bool = False) -> None:
        """Call ``done`` for the videos read to their end whose frames are all sent; save where each video
        under way is (its first frame still queued) if it is time to (or ``force``)."""
        for name, (key, _) in list(self.finishing.items()):
            if first_pending(pending, name) is None:
                del self.finishing[name]
                self._done(name, key)
        now = time.monotonic()
        if self.places is None or not (force or self.places.due(now)):
            return
        under_way = {name: (path, None) for name, (_, path) in self.finishing.items()}
        if self.current is not None:
            under_way[self.current.name] = (self.path, self.current.decoded)
        for name, (path, decoded) in under_way.items():
            frame = first_pending(pending, name)
            self.places.put(name, path, {"frame": decoded if frame is None else frame})
        self.places.write(now, force)

    def _end(self, pending, finished: bool) -> None:
        """The video at hand is read: done once its frames still queued are sent (at once if it broke off)."""
        if finished:
            self.finishing[self.current.name] = (self.key, self.path)
            self.tend(pending, force=True)
        else:
            self._done(self.current.name, self.key)
        self.close()

    def _done(self, name: str, key: tuple) -> None:
        if self.places is not None:
            self.places.drop(name, time.monotonic())
        self.done(key)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
