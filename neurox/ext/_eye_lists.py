"""The eye's two lists on disk: the labels file it reads (``name,label`` lines) and the log of the images
it has taken (so a restarted eye does not send them again)."""
from __future__ import annotations

import csv
import json
import os


class LabelsFile:
    """``name,label`` lines (a first line ``name,label`` is a header; ``#`` starts a comment), read again
    whenever the file changes."""

    def __init__(self, path: str):
        self.path = path
        self.labels: dict[str, str] = {}
        self.version = None
        self.state = "not read yet"

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.state = f"{exc.strerror}: {self.path}"
            return
        if (st.st_size, st.st_mtime_ns) == self.version:
            return
        labels = {}
        with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
            for n, row in enumerate(csv.reader(f)):
                if not row or row[0].lstrip().startswith("#") or (n == 0 and [c.strip().lower() for c in row[:2]]
                                                                  == ["name", "label"]):
                    continue
                if len(row) >= 2:
                    labels[os.path.normpath(row[0].strip())] = row[1].strip()
        self.labels, self.version = labels, (st.st_size, st.st_mtime_ns)
        self.state = f"{len(labels)} labels"

    def get(self, name: str) -> str | None:
        return self.labels.get(os.path.normpath(name))


class TakenLog:
    """The images already taken, as ``[name, size, mtime_ns]`` JSON lines appended to ``path`` (None:
    kept in memory only)."""

    def __init__(self, path: str | None):
        self.keys: set[tuple] = set()
        self.file = None
        if path is None:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        self.keys.add(tuple(json.loads(line)))
                    except (ValueError, TypeError):
                        continue  # a line cut short by a crash
        self.file = open(path, "a", encoding="utf-8")

    def has(self, key: tuple) -> bool:
        return key in self.keys

    def add(self, key: tuple) -> None:
        self.keys.add(key)
        if self.file is not None:
            self.file.write(json.dumps(list(key)) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
