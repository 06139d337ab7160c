"""Standard input or a named pipe as a source of bytes, read as they come (the eye and the stream use it).

Standard input ends when its writer closes it. A named pipe is held open for writing too, so that
it never ends: writers may come and go (``cat a.png > pipe; cat b.png > pipe``) and the reader sees
one stream. Only one extension of a network should read standard input (they would share it).
"""
from __future__ import annotations

import os
import stat

READ_CHUNK = 65536


def is_pipe(path: str) -> bool:
    """``-`` (standard input) or an existing named pipe."""
    if path == "-":
        return True
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


class Pipe:
    def __init__(self, path: str):
        self.path = path
        self.fd = 0 if path == "-" else os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._writer = None if path == "-" else os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def read(self) -> bytes | None:
        """What has come (call when ``fd`` is readable): bytes, ``b""`` at the end, None if nothing after all.
        OSError if it cannot be read."""
        try:
            return os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return None

    def close(self) -> None:
        if self._writer is not None:  # standard input is not ours to close
            os.close(self.fd)
            os.close(self._writer)
