"""``eye``: images into the network -- from a directory (and what is added to it while it runs), a file,
or a stream of concatenated images on standard input or a named pipe; videos, from files (resumed where
they were after a restart, ``_video``) or live streams (a URL or a named pipe, ``_live_video``).

Each image is decoded with Pillow (PNG, PGM/PPM/PBM, JPEG and BMP by default), converted to grey
(or RGB), resized to the start node's width -- an ``input_width`` of 64 is an 8x8 image -- and scaled
to [0, 1]. Targets, optionally, come from the name of the sub-directory an image lies in (``target =
"subdir"``: ``cats/001.png`` is a "cats") or from a labels file (``name,label`` lines). Its
message_hash_id, which the output extensions see, is the image's path under ``path`` (a stream's:
its index, 0, 1, 2, ...).

An image that cannot be used -- not an image, truncated, too large, an unknown label -- is counted by
kind, the first of each kind logged, the last few listed in ``status``; the eye carries on. It
remembers which images it took (``remember``), so a restarted eye does not send them again; a file
that changes is a new image. A directory or file is watched with inotify (``watchfiles``, in a thread
that only wakes the loop: :mod:`~neurox.ext._watch`), with a scan every ``poll_s`` as the fallback
where inotify cannot be used. See docs/extensions.md, "eye".

    [[extension]]
    name = "eye"
    module = "eye"
    path = "/srv/digits"            # /srv/digits/3/scan-0001.png learns that this is a 3
    target = "subdir"
"""
from __future__ import annotations

import os
import random
import stat
import time
from collections import deque

from ..neuron import Topology
from ._sample_input import SampleInput
from ._eye_lists import LabelsFile, TakenLog
from ._images import DEFAULT_FORMATS, ImageSpec, ImageSplitter, decode_image, image_size_for, known_formats
from ._pipes import Pipe, is_pipe
from ._samples import InputError, Sample
from ._mixing import joined_width
from ._settings import ExtensionError, Setting
from ._watch import DirectoryWatch
from ._live_video import LIVE_SETTINGS, LiveVideo, is_live, is_url
from ._offsets import SavedPlaces
from ._video import VIDEO_SETTINGS, VideoInput, av

SETTLE_S = 1.0
"""A file last modified longer ago than this is complete when first seen; a newer one is taken once it
stays the same size and time over one scan (write-then-rename into the directory is taken at once)."""
RESCAN_S = 30.0
"""With inotify, a full scan still runs this often, in case a change was missed (the path replaced)."""
WORK_BUDGET_S = 0.05
"""Decoding per turn of the loop, so that answers and control requests are not kept waiting."""


class Extension(SampleInput):
    settings_schema = {
        **SampleInput.settings_schema,
        "path": Setting("a directory (watched for new images), an image file (read again when it changes), "
                        "'-' for standard input, or a named pipe: a stream of concatenated PNG or binary "
                        "PGM/PPM/PBM images (pipe = 'video': a live video); or a live video's URL (rtsp://, "
                        "http://, udp://, tcp://, ...)", kind="path"),
        "size": Setting("'WxH' pixels the image is resized to; W x H (x 3 for RGB) must be the network's "
                        "input_width; default: the square that fits", None),
        "mode": Setting("'L': grey, one value a pixel; 'RGB': three values a pixel, row after row", "L",
                        choices=("L", "RGB")),
        "normalize": Setting("'unit': value / maximum; 'minmax': each image stretched to [0, 1]", "unit",
                             choices=("unit", "minmax")),
        "invert": Setting("1 - value, after normalising (dark ink on white paper becomes high values)", False,
                          "bool"),
        "target": Setting("'subdir': learn from the name of the sub-directory of path an image lies in (a label "
                          "of the topology's [output] labels, or a class index); 'none': no target", "none",
                          choices=("none", "subdir")),
        "labels_file": Setting("a CSV file of 'name,label' lines (name: the image's path under path; in a "
                               "stream, its index), read again when it changes; images it does not list have "
                               "no target", None, "path"),
        "order": Setting("the order new images of a directory are taken in: 'name', or 'shuffled' (learning "
                         "from a directory sorted by class would see all of one class, then all of the next)",
                         "name", choices=("name", "shuffled")),
        "seed": Setting("of the shuffling", 0, "int"),
        "poll_s": Setting("how often a directory or file is looked at for new images when it is polled (with "
                          "inotify, a change is seen at once)", 0.5, "float", minimum=0.01),
        "watch": Setting("'auto': inotify (watchfiles) where it works, else polling every poll_s; 'poll': "
                         "always poll", "auto", choices=("auto", "poll")),
        "formats": Setting("the image formats accepted (Pillow's names; PPM is PGM, PPM and PBM)",
                           list(DEFAULT_FORMATS), "strings"),
        "max_bytes": Setting("larger image files are refused (too_large)", 16 * 1024 * 1024, "int", minimum=1),
        "max_pixels": Setting("images of more pixels are refused before they are decoded (too_large)",
                              4096 * 4096, "int", minimum=1),
        "remember": Setting("keep a list of the images taken in the data directory, so that a restarted eye "
                            "does not send them again", True, "bool"),
        **VIDEO_SETTINGS,
        **LIVE_SETTINGS,
    }

    @classmethod
    def configure(cls, raw: dict, name: str, topology: Topology) -> dict:
        settings = super().configure(raw, name, topology)
        if isinstance(raw.get("path"), str) and is_url(raw["path"]):
            settings["path"] = raw["path"]  # a live stream's URL, not a file to make absolute
        problems = []
        size, width = settings["size"], joined_width(settings, topology)
        if size is None:
            fit = image_size_for(width, settings["mode"])
            if fit is None:
                problems.append(f"input_width {width} is not a square {settings['mode']} image; "
                                f"give size = \"WxH\"")
            settings["size"] = f"{fit[0]}x{fit[1]}" if fit else None
        else:
            try:
                w, h = (int(v) for v in size.lower().split("x"))
                if w <= 0 or h <= 0:
                    raise ValueError
            except ValueError:
                problems.append(f"'size': expected 'WxH' such as '8x8', got {size!r}")
            else:
                channels = 3 if settings["mode"] == "RGB" else 1
                if w * h * channels != width:
                    problems.append(f"'size': {w}x{h} {settings['mode']} is {w * h * channels} values; the network "
                                    f"takes {width}")
                settings["size"] = f"{w}x{h}"
        unknown = sorted(set(settings["formats"]) - known_formats())
        if unknown:
            problems.append(f"'formats': unknown {unknown}; Pillow knows {sorted(known_formats())}")
        if settings["target"] == "subdir" and settings["labels_file"]:
            problems.append("give target = \"subdir\" or labels_file, not both")
        if settings["target"] == "subdir" and (settings["path"] == "-" or is_url(settings["path"])):
            problems.append("target = \"subdir\" needs a directory; a stream's targets come from a labels_file")
        if settings["path"] == "-" and settings["pipe"] == "video":
            problems.append("pipe = \"video\" is for a named pipe (or a URL); standard input carries images only")
        if av is None and (is_url(settings["path"]) or settings["pipe"] == "video"):
            problems.append("a live video needs PyAV: pip install 'neurox[video]'")
        if problems:
            raise ExtensionError(f"extension {name!r}: " + "; ".join(problems))
        return settings

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        size = tuple(int(v) for v in settings["size"].split("x"))
        self.spec = ImageSpec(size, settings["mode"], settings["normalize"], settings["invert"],
                              tuple(settings["formats"]), settings["max_bytes"], settings["max_pixels"])
        remember = settings["remember"] and not is_pipe(settings["path"]) and not is_url(settings["path"])
        self.videos = VideoInput(settings, self.spec, SavedPlaces(self._saved("videos")) if remember else None,
                                 self._video_done)
        self.path = settings["path"]
        self.poll_s = settings["poll_s"]
        self.subdir_targets = settings["target"] == "subdir"
        self.labels = LabelsFile(settings["labels_file"]) if settings["labels_file"] else None
        self.counters.update(images=0)
        self.state = "starting"
        self.pipe = self.live = None
        if is_live(self.path, settings["pipe"]):
            self.live = LiveVideo(self.path, settings, self.videos.spec, self.spec,
                                  lambda text: print(f"{self.name}: {text}", flush=True))
            self.watch_source(self.live.fd, self._on_live)
            self.state = "reading"
        elif is_pipe(self.path):
            self.splitter = ImageSplitter(self.spec.max_bytes, self.spec.max_pixels)
            self.index = 0
            self.pipe = Pipe(self.path)
            self.watch_source(self.pipe, self._on_pipe)
            self.state = "reading"
        else:
            self.taken = TakenLog(self._saved("taken") if settings["remember"] else None)
            self.seen: dict[str, tuple[int, int]] = {}
            self.backlog: deque[tuple[str, str, tuple]] = deque()
            self.queued: set[tuple] = set()
            self.next_scan = self.next_labels = 0.0
            self.rng = random.Random(settings["seed"]) if settings["order"] == "shuffled" else None
            self.watcher: DirectoryWatch | None = None
            self.watching = "polling" if settings["watch"] == "poll" else "starting"
            """How changes are seen: ``inotify``, or ``polling`` (and why, when inotify was wanted)."""
            self.unsettled = False

    def ready_info(self) -> dict:
        source = "live" if self.live is not None else "pipe" if self.pipe is not None else "path"
        return {"kind": self.kind, "source": source, "path": self.path,
                "size": list(self.spec.size), "mode": self.spec.mode}

    def status(self) -> dict:
        return {**super().status(), "state": self.state, "path": self.path,
                **({"watch": self.watching} if self.pipe is None and self.live is None else {}),
                **(self.live.status() if self.live is not None else {}),
                **({"labels_file": self.labels.state} if self.labels else {})}

    # -- a directory or a file -------------------------------------------------------------------
    def refill(self) -> float | None:
        if self.live is not None:
            return 0.0 if self._drain_live() else None
        if self.pipe is not None:
            return 0.0 if self._drain_splitter() else None
        now = time.monotonic()
        if self.labels and now >= self.next_labels:  # a stat every poll_s: it may lie outside the watched path
            self.labels.refresh()
            self.next_labels = now + self.poll_s
        if now >= self.next_scan and not self.backlog:
            self._scan()
            self.next_scan = now + self._scan_interval()
        self.videos.tend(self.pending)
        started = time.monotonic()
        while (self.backlog or self.videos.busy) and self.room > 0:
            if time.monotonic() - started > WORK_BUDGET_S or self.videos.pump(self, WORK_BUDGET_S):
                return 0.0
            if self.backlog:
                self._take(*self.backlog.popleft())
        due = min(self.next_scan, self.next_labels) if self.labels else self.next_scan
        more = (self.backlog or self.videos.busy) and self.room > 0
        return 0.0 if more else max(0.0, due - time.monotonic())

    def _scan_interval(self) -> float:
        """Seconds to the next scan: ``poll_s`` when polling, or while a new file may still be being written
        (it is taken once it stays the same over a scan); with inotify, a change brings the scan forward."""
        if self.watcher is not None and not self.watcher.alive:
            self.watching = f"polling ({self.watcher.failed or 'inotify stopped'})"
            self._stop_watching()
        if self.watcher is None:
            return self.poll_s
        return min(self.poll_s, SETTLE_S) if self.unsettled else RESCAN_S

    def _start_watching(self) -> None:
        self.watcher = DirectoryWatch(self.path)
        if self.watcher.failed:
            self.watching = f"polling ({self.watcher.failed})"
            self._stop_watching()
            return
        self.watching = "inotify"
        self.watch_source(self.watcher.fd, self._on_change)

    def _on_change(self) -> None:
        self.watcher.drain()
        self.next_scan = 0.0

    def _stop_watching(self) -> None:
        if self.watcher is not None:
            self.unwatch_source(self.watcher.fd)
            self.watcher.close()
            self.watcher = None

    def _scan(self) -> None:
        try:
            top = os.stat(self.path)
        except OSError as exc:
            self._set_state(f"waiting: {exc.strerror}: {self.path}")
            return
        if stat.S_ISDIR(top.st_mode):
            found = self._walk()
        elif stat.S_ISREG(top.st_mode):
            found = [(os.path.basename(self.path), self.path, top)]
        else:
            self._set_state(f"waiting: {self.path} is neither a directory nor a file")
            return
        self._set_state("watching")
        if self.watching == "starting":
            self._start_watching()
        if self.rng is not None:
            self.rng.shuffle(found)
        wall = time.time()
        self.unsettled = False
        for rel, full, st in found:
            key = (rel, st.st_size, st.st_mtime_ns)
            if key in self.queued or self.taken.has(key):
                continue
            settled = self.seen.get(rel) == key[1:] or wall - st.st_mtime > SETTLE_S
            self.seen[rel] = key[1:]
            if settled:
                self.backlog.append((rel, full, key))
                self.queued.add(key)
            else:
                self.unsettled = True

    def _walk(self) -> list[tuple[str, str, os.stat_result]]:
        """Every regular file under the directory (not hidden ones), in name order."""
        found = []
        for folder, dirs, files in os.walk(self.path, onerror=lambda exc: self._set_state(f"watching ({exc})")):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue  # gone meanwhile
                if stat.S_ISREG(st.st_mode):
                    found.append((os.path.relpath(full, self.path), full, st))
        return found

    def _take(self, rel: str, full: str, key: tuple) -> None:
        if self.videos.handles(rel):
            self._open_video(rel, full, key)
            return
        self.queued.discard(key)
        self.taken.add(key)
        try:
            target = self._target_of(rel)
            if key[1] > self.spec.max_bytes:
                raise InputError("too_large", f"{key[1]} bytes is more than max_bytes ({self.spec.max_bytes})")
            with open(full, "rb") as f:
                data = f.read(self.spec.max_bytes + 1)
            row = decode_image(data, self.spec)
        except FileNotFoundError:
            self.count("vanished")  # removed between the scan and now
            return
        except OSError as exc:
            self.reject("unreadable", f"{rel}: {exc.strerror or exc}")
            return
        except InputError as exc:
            self.reject(exc.error, f"{rel}: {exc.detail}")
            return
        self.offer(Sample(row, target, rel))
        self.count("images")

    def _open_video(self, rel: str, full: str, key: tuple) -> None:
        """Start a video (at its saved place); it is taken (remembered) once its frames are all sent."""
        try:
            if self.videos.open(full, rel, self._target_of(rel), key):
                self.count("videos_resumed")
        except (OSError, InputError) as exc:
            self._video_done(key)
            if isinstance(exc, FileNotFoundError):
                self.count("vanished")
            else:
                self.reject(exc.error if isinstance(exc, InputError) else "unreadable",
                            f"{rel}: {exc.detail if isinstance(exc, InputError) else exc.strerror or exc}")

    def _video_done(self, key: tuple) -> None:
        self.queued.discard(key)
        self.taken.add(key)

    def _saved(self, what: str) -> str:
        return os.path.join(self.data_dir, "extensions", f"{self.name}.{what}")

    def _target_of(self, name: str):
        if self.subdir_targets:
            parts = name.split(os.sep)
            return self.targets.parse(parts[0]) if len(parts) > 1 else None
        if self.labels:
            label = self.labels.get(name)
            return None if label is None else self.targets.parse(label)
        return None

    # -- a live video ------------------------------------------------------------------------------
    def _on_live(self) -> None:
        self.live.drain()
        self._drain_live()

    def _drain_live(self) -> bool:
        """Offer the frames the live stream handed over while there is room; True if time ran out first."""
        if self.labels and self.room > 0:
            self.labels.refresh()
        started = time.monotonic()
        while self.room > 0:
            if time.monotonic() - started > WORK_BUDGET_S:
                return True
            item = self.live.take()
            if item is None:
                return False
            if isinstance(item, InputError):
                self.reject(item.error, f"{self.path}: {item.detail}")
                continue
            try:
                target = self._target_of(str(item[0]))
            except InputError as exc:
                self.reject(exc.error, f"frame {item[0]}: {exc.detail}")
                continue
            self.offer(Sample(item[1], target, item[0]))
            self.count("frames")
        return False

    # -- a stream ----------------------------------------------------------------------------------
    def _on_pipe(self) -> None:
        data = self.read_source(self.pipe)
        if data is None:
            return
        if not data:
            self.state = "ended"
        self.splitter.feed(data)
        self._drain_splitter()

    def _drain_splitter(self) -> bool:
        """Decode and offer the complete images held while there is room; True if time ran out first."""
        if self.labels and self.room > 0:
            self.labels.refresh()
        started = time.monotonic()
        while self.room > 0:
            if time.monotonic() - started > WORK_BUDGET_S:
                return True  # the rest at the next turn of the loop
            item = self.splitter.next()
            if item is None:
                if self.state == "ended" and self.splitter.pending():
                    self.reject("bad_image", f"the stream ended inside an image ({self.splitter.pending()} bytes)")
                    self.splitter.clear()
                return False
            if isinstance(item, InputError) and item.error == "bad_stream":
                self.reject(item.error, f"after image {self.index - 1}: {item.detail}")
                continue  # not an image: it takes no index
            index, self.index = self.index, self.index + 1
            try:
                if isinstance(item, InputError):
                    raise item
                target = self._target_of(str(index))
                row = decode_image(item, self.spec)
            except InputError as exc:
                self.reject(exc.error, f"image {index}: {exc.detail}")
                continue
            self.offer(Sample(row, target, index))
            self.count("images")
        return False

    def _set_state(self, state: str) -> None:
        if state != self.state and state.startswith("waiting"):
            print(f"{self.name}: {state}", flush=True)
        self.state = state

    def close(self) -> None:
        if self.live is not None:
            self.unwatch_source(self.live.fd)
            self.live.close()
        elif self.pipe is not None:
            self.unwatch_source(self.pipe)
            self.pipe.close()
        else:
            self._stop_watching()
            self.videos.tend(self.pending, force=True)
            self.taken.close()
        self.videos.close()
        super().close()
