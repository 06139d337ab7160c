"""A process's resident memory, read from /proc: cheap enough for a report every second."""
from __future__ import annotations

import os


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process on this machine, in bytes (None if it is gone or cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
