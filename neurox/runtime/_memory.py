"""A process's memory: its resident size, read from /proc cheaply enough for a report every second, and
how much freed heap its C library keeps for it."""
from __future__ import annotations

import ctypes
import functools
import os

_PAGE = os.sysconf("SC_PAGE_SIZE")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters (malloc.h)."""
_own: tuple[int, int] | None = None
"""(pid, fd of its /proc/PID/statm), kept open: opening it for every report cost more than reading it."""


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process on this machine, in bytes (None if it is gone or cannot be read)."""
    try:
        if pid == "self":
            return _pages(os.pread(_own_statm(), 64, 0))
        with open(f"/proc/{pid}/statm", "rb") as f:
            return _pages(f.read())
    except (OSError, ValueError, IndexError):
        return None


def _own_statm() -> int:
    """This process's statm, opened once per process (a forked child opens its own: the parent's fd
    names the parent)."""
    global _own
    pid = os.getpid()
    if _own is None or _own[0] != pid:
        if _own is not None:
            os.close(_own[1])  # the parent's, inherited: this process's copy of it
        _own = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
    return _own[1]


def _pages(statm: bytes) -> int:
    return int(statm.split()[1]) * _PAGE


def keep_heap(kept: int) -> None:
    """Have glibc's malloc keep up to ``kept`` bytes of freed heap, and serve blocks under a quarter of that
    from the heap: by default blocks of 128 KiB and more are mapped and unmapped, or trimmed off the heap,
    each time, and a process that makes such temporaries for every message pays page faults for them (112
    for MessengerIn's scan of a 256-row bundle, 40 % of it). Nothing on another C library."""
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, kept // 4)
        mallopt(M_TRIM_THRESHOLD, kept)


@functools.cache
def _mallopt():
    """glibc's ``mallopt``, looked up once (a neuron's start calls it; the lookup was most of its cost), or
    None on another C library."""
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
