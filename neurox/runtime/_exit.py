"""Why a process ended, in the terms a supervisor decides on (OTP's exit reasons).

``normal`` (exit code 0), ``shutdown`` (exit code EXIT_SHUTDOWN, or death by SIGTERM: the polite
stop was obeyed), and ``crash`` (any other exit code, or any other signal, SIGKILL included).
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

EXIT_SHUTDOWN = 64
"""Exit code of a process that stopped because it was asked to (OTP reason ``shutdown``)."""
EXIT_START_FAILED = 65
"""Exit code of a process whose initialisation failed (a supervisor whose children could not start)."""


@dataclass(frozen=True)
class ExitReason:
    """An ended process's reason: ``kind`` is normal, shutdown or crash."""

    kind: str
    code: int | None = None
    signal: int | None = None

    @property
    def abnormal(self) -> bool:
        return self.kind == "crash"

    def describe(self) -> str:
        if self.signal is not None:
            return f"{self.kind} (signal {signal.Signals(self.signal).name})"
        if self.code is not None and self.code not in (0,):
            return f"{self.kind} (exit code {self.code})"
        return self.kind

    def to_wire(self) -> dict:
        return {"kind": self.kind, "code": self.code, "signal": self.signal}

    @classmethod
    def from_wire(cls, data: dict) -> "ExitReason":
        return cls(data["kind"], data.get("code"), data.get("signal"))


def reason_from_status(code: int | None, sig: int | None) -> ExitReason:
    """Classify an exit code or terminating signal (exactly one of them is set)."""
    if sig is not None:
        return ExitReason("shutdown" if sig == signal.SIGTERM else "crash", signal=sig)
    if code == 0:
        return ExitReason("normal", code=0)
    if code == EXIT_SHUTDOWN:
        return ExitReason("shutdown", code=code)
    return ExitReason("crash", code=code)


def reason_from_wait_status(status: int) -> ExitReason:
    """Classify a raw ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        return reason_from_status(None, os.WTERMSIG(status))
    return reason_from_status(os.WEXITSTATUS(status), None)
