"""How a supervisor stops its children (OTP's shutdown), as pure decisions; ``_supervisor`` does the signalling.

Children stop in reverse start order, each by its own spec's ``shutdown``: ``brutal_kill`` is SIGKILL at
once; a timeout in ms is SIGTERM (OTP's ``exit(Child, shutdown)``), then SIGKILL when the time is up;
``infinity`` is SIGTERM and a wait without end (a child supervisor stops its own children the same way
before it exits, so a subtree goes from its leaves up, each by its own rule). A supervisor whose children
may stop together (:func:`stops_concurrently`) signals them all first, in the same reverse order, and
then awaits each by its own rule from the moment it was signalled.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass

from ._child_spec import BRUTAL_KILL, INFINITY

KILL_WAIT_S = 10.0
"""How long to wait for the exit notice of a SIGKILLed child (the kernel is quick; this is a bound)."""


@dataclass(frozen=True)
class StopRule:
    """How one child is stopped: the first signal, and when (if ever) it is followed by SIGKILL."""

    signal: int
    kill_after_s: float | None
    """Seconds after the first signal to send SIGKILL (None: never; the wait has no end, or the first
    signal was SIGKILL already)."""

    def deadline(self, signalled_at: float) -> float | None:
        """When the wait for its exit ends: at the kill, or (brutal_kill) at a bound for the kernel."""
        if self.kill_after_s is not None:
            return signalled_at + self.kill_after_s
        return signalled_at + KILL_WAIT_S if self.signal == signal.SIGKILL else None


def stop_rule(shutdown: int | str) -> StopRule:
    """The rule of a spec's ``shutdown``: brutal_kill, infinity, or a timeout in ms."""
    if shutdown == BRUTAL_KILL:
        return StopRule(signal.SIGKILL, None)
    if shutdown == INFINITY:
        return StopRule(signal.SIGTERM, None)
    return StopRule(signal.SIGTERM, shutdown / 1000.0)


def shutdown_order(order: list[str], running: set[str]) -> list[str]:
    """The running children, last started first."""
    return [child_id for child_id in reversed(order) if child_id in running]


def stops_concurrently(strategy: str, start_concurrently: bool, types: list[str]) -> bool:
    """Whether a supervisor stops its running children all at once rather than one after another.

    simple_one_for_one children always go at once (as in OTP). Workers that were started at once
    (``start_concurrently``: the neurons of a layer) do not depend on one another, so they stop at
    once too: a layer of 100 neurons then flushes its states on both cores, not one neuron after the
    other. A supervisor with supervisors among its children (the root) keeps the reverse order.
    """
    return strategy == "simple_one_for_one" or (start_concurrently and all(t == "worker" for t in types))
