"""A whole supervision tree on one host, as one handle: launcher, event bus and root supervisor.

``Tree`` is what a program (``neurox run``, ``neurox node``, a test) holds. It starts the launcher,
then the event bus and the root supervisor through it, and stops them in reverse. If the program
holding it dies, even by SIGKILL, the launcher's parent-death signal takes the launcher and with
it every process of the tree.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from ..runtime import (ExitReason, LauncherClient, LauncherError, ipc_endpoint, reason_from_status, run_base,
                      start_launcher)
from ._naming import control_endpoint
from ._supervisor import SUPERVISOR_TARGET

EVENT_BUS_TARGET = "neurox.runtime._bus:run_event_bus"


class TreeError(RuntimeError):
    """The tree could not start (the message says which part and why)."""


class Tree:
    """Start with :meth:`start` (or ``with Tree(...) as tree``); stop with :meth:`stop`."""

    def __init__(self, root: dict, run_dir: str | None = None, preload: tuple[str, ...] = (),
                 control: str | None = None, events_publish: str | None = None):
        self.root_args = root
        self.own_run_dir = run_dir is None
        self.run_dir = run_dir or tempfile.mkdtemp(prefix="nx-", dir=run_base())
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        self.preload = preload
        self.launcher_path = os.path.join(self.run_dir, "launcher.sock")
        self.events_sink = ipc_endpoint(self.run_dir, "events.sink")
        self.events = events_publish or ipc_endpoint(self.run_dir, "events.pub")
        self.events_control = ipc_endpoint(self.run_dir, "events.ctl")
        self.control = control or control_endpoint(self.run_dir, "root")
        self.launcher_proc = None
        self.client: LauncherClient | None = None
        self.bus_pid: int | None = None
        self.root_pid: int | None = None
        self.root_exit: ExitReason | None = None
        self.launcher_exit: ExitReason | None = None
        """Set when the launcher died under the tree (its children, the whole tree, died with it)."""
        self.stopping = False

    def __enter__(self) -> "Tree":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> "Tree":
        """Start the launcher, the event bus and the root; TreeError (everything stopped) if one fails.

        The launcher dies with the *thread* that calls this (PR_SET_PDEATHSIG), so call it from a
        thread that lives as long as the tree: the main thread, as a rule.
        """
        base_env = {"run_dir": self.run_dir, "launcher": self.launcher_path, "events": self.events_sink}
        try:
            self.launcher_proc = start_launcher(self.launcher_path, self.preload)
            self.client = LauncherClient(self.launcher_path)
        except (LauncherError, OSError) as exc:
            self.stop()
            raise TreeError(f"the launcher did not start: {exc}") from exc
        try:
            self.bus_pid = self._spawn_and_wait(
                EVENT_BUS_TARGET, {"sink": self.events_sink, "publish": self.events, "control": self.events_control},
                {**base_env, "name": "nx:events", "path": "events"}, timeout)
            self.root_pid = self._spawn_and_wait(
                SUPERVISOR_TARGET, self.root_args,
                {**base_env, "name": "nx:root", "path": "root", "control": self.control}, timeout)
        except TreeError:
            self.stop()
            raise
        return self

    def _spawn_and_wait(self, target: str, args: dict, env: dict, timeout: float) -> int:
        try:
            pid = self.client.spawn(target, args, env)
        except LauncherError as exc:
            raise TreeError(f"{env['path']} could not be forked: {exc}") from None
        deadline = time.monotonic() + timeout
        outcome = None
        while outcome is None and self.client is not None and (left := deadline - time.monotonic()) > 0:
            for notice in self._events(left):
                if notice.get("pid") != pid:
                    self._note_exits([notice])
                elif outcome is None and notice["ev"] in ("ready", "exit"):
                    outcome = notice
        if outcome is None:
            raise TreeError(f"{env['path']} did not become ready: {self.failure()}" if self.launcher_exit
                            else f"{env['path']} did not become ready within {timeout} s")
        if outcome["ev"] == "exit":
            raise TreeError(f"{env['path']} exited while starting: "
                            f"{ExitReason.from_wire(outcome['reason']).describe()}")
        return pid

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """Wait until the root supervisor exits (it gave up, or was stopped); None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.root_exit is None and self.client is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._note_exits(self._events(remaining))
        return self.root_exit

    def _events(self, timeout: float | None) -> list[dict]:
        """The launcher's notices; if the launcher is gone, the tree is too: recorded, no notice."""
        try:
            return self.client.events(timeout)
        except LauncherError:
            self._launcher_died()
            return []

    def _launcher_died(self) -> None:
        """The launcher's death is the host's tree's death (docs/supervision.md): its children carry a
        parent-death signal, so every process of the tree is gone; nothing is left to stop."""
        code = self.launcher_proc.wait(10.0) if self.launcher_proc is not None else 0
        self.launcher_exit = reason_from_status(None, -code) if code < 0 else reason_from_status(code, None)
        self.launcher_proc = None
        self.client.close()
        self.client = None
        self.root_pid = self.bus_pid = None

    def failure(self) -> str | None:
        """One line saying what ended the tree without being asked to, or None (running, or stopped on request)."""
        if self.launcher_exit is not None:
            return (f"the launcher (fork server) died ({self.launcher_exit.describe()}); every process of the "
                    f"network died with it")
        if self.root_exit is not None and not self.stopping:
            gave_up = self.root_exit.kind == "shutdown" and self.root_exit.signal is None
            return ("the root supervisor gave up (its restart intensity was reached)" if gave_up
                    else f"the root supervisor died ({self.root_exit.describe()})")
        return None

    def _signal(self, pid: int, sig: int) -> None:
        if self.client is None:
            return
        try:
            self.client.signal(pid, sig)
        except (LauncherError, OSError):
            self._launcher_died()

    def _note_exits(self, notices: list[dict]) -> None:
        for notice in notices:
            if notice["ev"] == "exit" and notice["pid"] == self.root_pid:
                self.root_exit = ExitReason.from_wire(notice["reason"])
            elif notice["ev"] == "exit" and notice["pid"] == self.bus_pid:
                self.bus_pid = None

    @property
    def alive(self) -> bool:
        if self.client is None or self.root_pid is None:
            return False
        self._note_exits(self._events(0.0))
        return self.client is not None and self.root_exit is None

    def stop(self, timeout: float = 60.0) -> ExitReason | None:
        """Stop the root politely (its children go in reverse order), then the bus and the launcher."""
        if self.client is not None and self.root_pid is not None and self.alive:
            self.stopping = True
            self._signal(self.root_pid, signal.SIGTERM)
            if self.wait(timeout) is None and self.client is not None:
                self._signal(self.root_pid, signal.SIGKILL)
                self.wait(10.0)
        if self.client is not None and self.bus_pid is not None:
            self._signal(self.bus_pid, signal.SIGTERM)
            deadline = time.monotonic() + 5.0
            while self.client is not None and self.bus_pid is not None and (left := deadline - time.monotonic()) > 0:
                self._note_exits(self._events(left))
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.launcher_proc is not None:
            self.launcher_proc.send_signal(signal.SIGTERM)
            try:
                self.launcher_proc.wait(10.0)
            except subprocess.TimeoutExpired:
                self.launcher_proc.kill()
                self.launcher_proc.wait()
            self.launcher_proc = None
        if self.own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.root_exit
