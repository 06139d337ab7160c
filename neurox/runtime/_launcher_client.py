"""Starting the launcher, the client side of its protocol (see ``_launcher``), and where a tree's
run directory (the launcher's socket, every ipc endpoint) goes by default."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import deque

from ._fork import ParentGone
from ._launcher import PACKET_MAX, PART_BYTES
from ._wire import pack, unpack_map


LAUNCHER_ENVIRONMENT = {
    # one thread for the arithmetic: a host runs many neurons, and a BLAS pool per neuron would only
    # make them fight over the cores
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
    # glibc's malloc: two arenas are plenty for a process whose Python code runs on one thread (a fixed
    # low mmap threshold was tried and measured: it made every small frame cost a 1 MiB mmap somewhere)
    "MALLOC_ARENA_MAX": "2",
}
"""The environment every process of a tree inherits from the launcher."""
LAUNCHER_MAIN = "import sys; from neurox.runtime._launcher import main; main(sys.argv[1:])"
RUN_BASES = ("/dev/shm", "/tmp")
"""Where private run directories go by default, the first that is a writable directory: in memory
if the host has it. Binding an ipc endpoint creates a file, twice per neuron, once per restart; on a
disk's ext4 that shared the host with other work it took 0.84 ms (p50, 1.7 ms mean, CPU spent
scanning for a free inode) against 0.016 ms in tmpfs. A deployed node's run directory is systemd's
``RuntimeDirectory`` (``/run``: tmpfs) anyway."""


def run_base() -> str:
    """The directory in which to make a private run directory (see ``RUN_BASES``)."""
    return next((d for d in RUN_BASES if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK)), "/tmp")


class LauncherError(RuntimeError):
    """The launcher refused a request or could not be reached."""


class LauncherGone(LauncherError, ParentGone):
    """The launcher closed the connection: it died, and every child of it is dying with it."""


class LauncherClient:
    """One connection to the launcher. Children spawned through it die when it closes.

    ``fileno()`` can be registered in a ``zmq.Poller``; :meth:`events` then returns the
    ``ready`` and ``exit`` notices that have arrived, in order.
    """

    def __init__(self, socket_path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.sock.connect(socket_path)
        except OSError:
            self.sock.close()
            raise
        self._pending: deque[dict] = deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def spawn(self, target: str, args: dict, env: dict, respawn: bool = False) -> int:
        """Fork a child running ``target(args, env)``; returns its pid once it exists. With ``respawn``
        the launcher starts it again at once if it crashes once ready (see ``_launcher``)."""
        request = {"op": "spawn", "target": target, "args": args, "env": env}
        if respawn:
            request["respawn"] = True
        self._send(pack(request))
        while True:
            message = self._receive()
            if message["ev"] == "spawned":
                return message["pid"]
            if message["ev"] == "spawn_failed":
                raise LauncherError(message.get("detail", "spawn failed"))
            self._pending.append(message)

    def signal(self, pid: int, sig: int) -> None:
        """Send ``sig`` to a child of this connection if it has not been reaped yet."""
        self._send(pack({"op": "signal", "pid": pid, "sig": int(sig)}))

    def events(self, timeout: float | None = 0.0) -> list[dict]:
        """Notices received so far; waits up to ``timeout`` seconds for the first one."""
        out = list(self._pending)
        self._pending.clear()
        if out:
            timeout = 0.0
        self.sock.settimeout(timeout)
        try:
            while True:
                message = self._receive()
                out.append(message)
                self.sock.settimeout(0.0)
        except (BlockingIOError, socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(None)
        return out

    def _send(self, request: bytes) -> None:
        """One packet, or, for a long request, its parts (see ``_launcher.PART_BYTES``)."""
        try:
            if len(request) <= PART_BYTES:
                self.sock.send(request)
                return
            for at in range(0, len(request), PART_BYTES):
                last = at + PART_BYTES >= len(request)
                self.sock.send(pack({"op": "end" if last else "part", "data": request[at:at + PART_BYTES]}))
        except (BrokenPipeError, ConnectionResetError):
            raise LauncherGone("the launcher closed the connection") from None

    def _receive(self) -> dict:
        try:
            packet = self.sock.recv(PACKET_MAX)
        except ConnectionResetError:
            packet = b""
        if not packet:
            raise LauncherGone("the launcher closed the connection")
        return unpack_map(packet, PACKET_MAX)


def start_launcher(socket_path: str, preload: tuple[str, ...] = (),
                   timeout: float = 60.0) -> subprocess.Popen:
    """Exec the launcher (once per host or network) and wait until it accepts connections."""
    os.makedirs(os.path.dirname(socket_path), mode=0o700, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    # A session of its own: a Ctrl-C at the terminal reaches only the program holding the tree,
    # which then stops the tree politely, instead of every process at once.
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER_MAIN, socket_path, *preload], start_new_session=True,
                            env={**os.environ, **LAUNCHER_ENVIRONMENT})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LauncherError(f"launcher exited with code {proc.returncode} while starting")
        try:
            LauncherClient(socket_path).close()
            return proc
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise LauncherError(f"launcher did not listen on {socket_path} within {timeout} s") from None
            time.sleep(0.01)
