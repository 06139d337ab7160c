"""What a crashed ``neurox node`` left in its run directory, removed at its next start.

A node given ``run_dir`` (systemd's ``RuntimeDirectory=`` survives a crash of the agent until the unit
stops; a run directory set by hand survives anything) finds there the sockets of its previous tree and
``tcp.json``. Nothing answers on them any more, but a tool would still find them and a process binding
the same name would fail. Before starting, the node checks that no network still runs there -- its
launcher does not accept a connection -- and then removes every socket below the directory and
``tcp.json``. Anything else in the directory is left alone.
"""
from __future__ import annotations

import os
import socket
import stat

from ..runtime import TCP_FILE

LAUNCHER_SOCKET = "launcher.sock"


class RunDirInUse(Exception):
    """A network still runs from this run directory: starting another there would take its sockets."""


def launcher_answers(run_dir: str) -> bool:
    """Whether a launcher listens in ``run_dir`` (a network runs there)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(os.path.join(run_dir, LAUNCHER_SOCKET))
        return True
    except OSError:  # no such file, or refused: nobody listens
        return False
    finally:
        probe.close()


def stale_entries(run_dir: str) -> list[str]:
    """Every socket below ``run_dir`` and its ``tcp.json``, as paths (none if the directory is missing)."""
    found = []
    for folder, _, files in os.walk(run_dir):
        for name in files:
            path = os.path.join(folder, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISSOCK(mode) or (folder == run_dir and name in (TCP_FILE, f"{TCP_FILE}.tmp")):
                found.append(path)
    return sorted(found)


def clear_stale_run_dir(run_dir: str | None) -> list[str]:
    """Remove what a crashed predecessor left in ``run_dir``; the paths removed. ``RunDirInUse`` if a
    network still runs there. Nothing to do without a run directory of one's own choosing."""
    if run_dir is None or not os.path.isdir(run_dir):
        return []
    if launcher_answers(run_dir):
        raise RunDirInUse(f"{run_dir} is in use: a network's launcher answers on "
                          f"{os.path.join(run_dir, LAUNCHER_SOCKET)}; stop it first, or give another run_dir")
    removed = []
    for path in stale_entries(run_dir):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
