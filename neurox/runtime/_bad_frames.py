"""Bookkeeping for rejected input: every bad frame is counted by kind, and only the first of each
kind is logged, so a flood of garbage costs a counter increment, not a flood of log lines."""
from __future__ import annotations

import sys


class BadFrames:
    def __init__(self, owner: str):
        self.owner = owner
        self.by_kind: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def counts(self) -> dict:
        """``bad_frames`` (the total) and ``bad_frames_by_kind``, as every process's counters carry them."""
        return {"bad_frames": self.total, "bad_frames_by_kind": dict(self.by_kind)}

    def note(self, kind: str, detail: str) -> None:
        seen = self.by_kind.get(kind, 0)
        self.by_kind[kind] = seen + 1
        if not seen:
            print(f"{self.owner}: rejected a bad frame ({kind}: {detail}); further ones of this kind are only "
                  f"counted", file=sys.stderr, flush=True)
