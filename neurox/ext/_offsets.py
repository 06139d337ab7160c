"""Where a stream extension is in its file, kept across crashes.

``DATA_DIR/extensions/NAME.offset`` holds one JSON map: the file it is about (path, device, inode) and the
place (``epoch`` and, for lines, the byte ``offset`` of the next line, its ``line_number`` and the CSV
``header``; for a file read whole, the ``position`` in the epoch's order). It is written atomically
(a temporary file renamed over it) at most every ``SAVE_EVERY_S`` and on a polite stop, so a restarted
stream resumes where it was instead of at the file's start, sending again at most the last second's
samples. A place saved for another file (replaced: another inode; or cut shorter than the offset) is
ignored: the stream starts from the beginning. :class:`SavedPlaces` keeps such places for several files
by name: the eye's videos, each resumed at its first frame not yet sent.
"""
from __future__ import annotations

import json
import os

SAVE_EVERY_S = 1.0


def file_identity(path: str) -> dict | None:
    """What says a file is still the one a place was saved for; None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"path": os.path.abspath(path), "device": st.st_dev, "inode": st.st_ino, "size": st.st_size}


def usable_place(saved: dict | None, identity: dict | None) -> dict | None:
    """The saved place if it is for this very file and still inside it (pure: the decision to resume)."""
    if not isinstance(saved, dict) or identity is None or not isinstance(saved.get("place"), dict):
        return None
    file = saved.get("file") or {}
    if any(file.get(key) != identity[key] for key in ("path", "device", "inode")):
        return None
    place = saved["place"]
    numbers = [place.get(key, 0) for key in ("offset", "frame", "epoch", "position", "line_number")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        return None  # not a place this code wrote (the file damaged by hand): from the start
    if place.get("offset", 0) > identity["size"]:
        return None  # the file was cut shorter: what was read is gone
    return place


class SavedOffset:
    """The place of one stream in one file: :meth:`load` once at the start, :meth:`save` as it reads."""

    def __init__(self, path: str, source: str):
        self.path, self.source = path, source
        self.next_save = 0.0
        self.last: dict | None = None

    def load(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return None  # none yet, or unreadable: from the start
        return usable_place(saved, file_identity(self.source))

    def save(self, place: dict, now: float, force: bool = False) -> None:
        """Write ``place`` if it changed and ``SAVE_EVERY_S`` has passed since the last write (or ``force``)."""
        if place == self.last or (now < self.next_save and not force):
            return
        identity = file_identity(self.source)
        if identity is None:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"file": identity, "place": place}, f)
        os.replace(temporary, self.path)
        self.last, self.next_save = dict(place), now + SAVE_EVERY_S


class SavedPlaces:
    """Places in several files at once, by name (the eye's videos under way): ``DATA_DIR/extensions/
    NAME.videos`` holds ``{name: {"file": identity, "place": place}}``, written atomically at most every
    ``SAVE_EVERY_S`` (or at once when forced: a video done, a polite stop)."""

    def __init__(self, path: str):
        self.path = path
        self.next_save = 0.0
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            saved = {}  # none yet, or unreadable: every video from its start
        self.entries: dict[str, dict] = saved if isinstance(saved, dict) else {}

    def get(self, name: str, source: str) -> dict | None:
        """The place saved for ``name`` if it is for this very file (``source``)."""
        return usable_place(self.entries.get(name), file_identity(source))

    def due(self, now: float) -> bool:
        return now >= self.next_save

    def put(self, name: str, source: str, place: dict) -> None:
        """Keep ``place`` for ``name`` (written by the next :meth:`write`)."""
        identity = file_identity(source)
        if identity is not None:
            self.entries[name] = {"file": identity, "place": dict(place)}

    def drop(self, name: str, now: float) -> None:
        """Forget ``name``'s place (its file is done), at once."""
        if self.entries.pop(name, None) is not None:
            self.write(now, force=True)

    def write(self, now: float, force: bool = False) -> None:
        """Write the places if ``SAVE_EVERY_S`` has passed since the last write (or ``force``)."""
        if now < self.next_save and not force:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self.entries, f)
        os.replace(temporary, self.path)
        self.next_save = now + SAVE_EVERY_S
