"""A data directory NeuroX can call its own, and a ``--fresh`` start that removes only what NeuroX made.

A network's data directory (``--data-dir``) holds its state: the neurons' LevelDBs, the live topology,
the modulators' and extensions' files. Users keep other things beside them (notes, datasets), so a
fresh start must not delete the directory: it removes the entries NeuroX writes (:data:`OWNED`, one
list for the whole package: a new kind of state is named here) and nothing else. A marker file says a
directory is NeuroX's; a fresh start refuses a non-empty directory without one, deleting nothing.

One network at a time runs from a data directory: the process that runs it holds the directory's lock
(:class:`Hold`, an ``flock``, which goes with its process however that ends), so a second ``neurox run``
on the same directory is refused instead of starting neurons that cannot open their stores and a live
topology and run file that overwrite the first network's.
"""
from __future__ import annotations

import fcntl
import os
import shutil

MIN_FREE_BYTES = 16 * 1024 * 1024
"""Free space a network needs to start: its LevelDBs' first logs and tables (a few MiB for the diamond)."""
MARKER = ".neurox"
"""Present in every data directory NeuroX has used."""
LOCK = ".neurox.lock"
"""Locked by the process that runs a network from the directory; holds its pid, for the message."""
OWNED = ("neurons", "pool", "extensions", "modulators", "scaling", "topology.json", "reshape.log", "run.json",
         "exported-topology.toml", "node-topology.sha256")
"""Top-level entries NeuroX writes in a data directory; nothing else there is ever deleted."""


class DataDirError(Exception):
    """The directory cannot be used as asked; nothing in it was changed."""


class Hold:
    """The lock of ``data_dir`` for a network about to run from it, until :meth:`release`; DataDirError,
    naming the process that holds it, if a network runs from there already."""

    def __init__(self, data_dir: str):
        os.makedirs(data_dir, exist_ok=True)
        self.fd: int | None = os.open(os.path.join(data_dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            self.release()
            raise DataDirError(f"{data_dir} is in use: a network runs from it (process {holder}); stop it first, "
                               f"or give another data directory") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def is_neurox_dir(data_dir: str) -> bool:
    """True for a directory NeuroX has used: the marker, or (made before the marker) a live topology."""
    return os.path.exists(os.path.join(data_dir, MARKER)) or os.path.exists(os.path.join(data_dir, "topology.json"))


def claim(data_dir: str) -> None:
    """Make ``data_dir`` (if needed) and mark it as NeuroX's."""
    os.makedirs(data_dir, exist_ok=True)
    marker = os.path.join(data_dir, MARKER)
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("A NeuroX data directory: `neurox run --fresh` removes only " + ", ".join(OWNED) + ".\n")


def ensure_usable(data_dir: str, min_free: int = MIN_FREE_BYTES) -> None:
    """Claim ``data_dir`` and check that a network can keep its state there, else :class:`DataDirError`
    in one line (a full disk, a read-only or foreign-owned directory), before anything starts."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        stat = os.statvfs(data_dir)
        free = stat.f_bavail * stat.f_frsize
        if free < min_free:
            raise DataDirError(f"the disk holding {data_dir} has {free // 1024} KiB free; a network needs at least "
                               f"{min_free // (1024 * 1024)} MiB to keep its state: free some space and start again")
        claim(data_dir)
    except OSError as exc:
        raise DataDirError(f"cannot use {data_dir} as the data directory: {exc.strerror}") from None


def wipe(data_dir: str) -> list[str]:
    """Remove what NeuroX made in ``data_dir`` (a fresh start); returns the entries removed.

    Raises :class:`DataDirError`, deleting nothing, for a path that is not a directory, a non-empty
    directory NeuroX has not used, or one a network runs from.
    """
    if not os.path.exists(data_dir):
        return []
    if not os.path.isdir(data_dir):
        raise DataDirError(f"{data_dir} is not a directory; nothing deleted")
    entries = set(os.listdir(data_dir))
    if entries and not is_neurox_dir(data_dir):
        raise DataDirError(f"{data_dir} is not a NeuroX data directory (no {MARKER} marker, no topology.json) "
                           f"and holds {len(entries)} entries; refusing to start fresh there, nothing deleted")
    hold = Hold(data_dir)  # not while a network runs from it (DataDirError, nothing deleted), nor one starts
    try:
        removed = sorted(entries & set(OWNED))
        for name in removed:
            path = os.path.join(data_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    finally:
        hold.release()
    return removed
