"""``jsonl``: every answer of the network as a JSON line in a file (or on standard output).

One line per sample, the record every built-in output writes (docs/extensions.md, "Records")::

    {"t": 1767000000.1, "source": "eye", "message_hash_id": "3/scan-0001.png", "packet": 123, "row": 0,
     "label": 3, "text": "3", "target": 3, "loss": 0.41, "output": [0.01, ...]}

Lines are appended and written out after each burst of answers, so a reader (``tail -f``) sees them
at once. If the file is moved or removed (log rotation), the next write opens a new one at ``path``.
A write that fails (a full disk) is counted with the records it lost, and the sink goes on.

    [[extension]]
    name = "answers"
    module = "jsonl"
    path = "/var/log/neurox/answers.jsonl"
"""
from __future__ import annotations

import os
import sys
import time

from ._api import OutputExtension
from ._samples import to_json
from ._settings import Setting

CHECK_ROTATION_S = 1.0


class Extension(OutputExtension):
    settings_schema = {
        **OutputExtension.settings_schema,
        "path": Setting("the file lines are appended to ('-': standard output); its directory is created",
                        kind="path"),
        "output": Setting("include each sample's raw output vector", True, "bool"),
    }

    def __init__(self, settings: dict, env: dict):
        super().__init__(settings, env)
        self.path = settings["path"]
        self.with_output = settings["output"]
        self.file = None
        self.lines: list[str] = []
        self.next_check = 0.0
        self.counters.update(written=0, write_errors=0, lost=0, reopened=0)
        self._open()

    def _open(self) -> bool:
        if self.path == "-":
            self.file = sys.stdout
            return True
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.file = open(self.path, "a", encoding="utf-8")
            return True
        except OSError as exc:
            self.reject("write_failed", f"{self.path}: {exc.strerror or exc}")
            self.file = None
            return False

    def on_records(self, records: list[dict]) -> None:
        for record in records:
            if not self.with_output:
                record.pop("output", None)
            self.lines.append(to_json(record))

    def flush(self) -> None:
        if not self.lines:
            return
        lines, self.lines = self.lines, []
        if self.file is None and not self._open():
            self.count("lost", len(lines))
            return
        try:
            self.file.write("\n".join(lines) + "\n")
            self.file.flush()
        except OSError as exc:
            self.count("write_errors")
            self.count("lost", len(lines))
            self.reject("write_failed", f"{self.path}: {exc.strerror or exc}")
            self._close_file()
            return
        self.count("written", len(lines))

    def tick(self) -> float | None:
        """Follow log rotation: if ``path`` is no longer the file we hold, the next write opens a new one."""
        now = time.monotonic()
        if self.path != "-" and self.file is not None and now >= self.next_check:
            self.next_check = now + CHECK_ROTATION_S
            try:
                moved = os.stat(self.path).st_ino != os.fstat(self.file.fileno()).st_ino
            except OSError:
                moved = True
            if moved:
                self._close_file()
                self.count("reopened")
        return CHECK_ROTATION_S

    def _close_file(self) -> None:
        if self.file is not None and self.file is not sys.stdout:
            try:
                self.file.close()
            except OSError:
                pass  # what it held is counted lost already
        self.file = None

    def close(self) -> None:
        self.flush()
        self._close_file()
        super().close()
