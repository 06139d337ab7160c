"""The supervisor's decisions as small pure functions (no processes, no sockets, no clocks).

Reading order follows OTP's restart path: an exit is seen -> :func:`should_restart` decides by the
child's restart type and the exit reason -> :func:`record_restart` and :func:`intensity_exceeded`
check the restart intensity -> :func:`restart_plan` applies the strategy. :func:`respawns` says when the
launcher may restart a crashed child at once, :func:`start_bound_s` how long a start may take.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._child_spec import ChildSpec

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
DEFAULT_INTENSITY = 3
"""Elixir's ``max_restarts`` default."""
DEFAULT_PERIOD_S = 5.0
"""Elixir's ``max_seconds`` default."""
DEFAULT_START_TIMEOUT_S = 30.0


def should_restart(restart: str, reason_kind: str) -> bool:
    """permanent: always; transient: only after a crash; temporary: never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return reason_kind == "crash"
    return False


def record_restart(restarts: tuple[float, ...], now: float, period: float) -> tuple[float, ...]:
    """The restart times still inside the period, plus ``now``."""
    return tuple(t for t in restarts if t > now - period) + (now,)


def intensity_exceeded(restarts: tuple[float, ...], intensity: int) -> bool:
    """More restarts inside the period than the intensity allows: the supervisor gives up."""
    return len(restarts) > intensity


@dataclass(frozen=True)
class RestartPlan:
    """What a strategy does after a child died: stop these (in this order), forget these, start these."""

    stop: tuple[str, ...]
    remove: tuple[str, ...]
    start: tuple[str, ...]


def restart_plan(strategy: str, dead: str, order: list[str], restart_types: dict[str, str],
                 running: set[str]) -> RestartPlan:
    """Apply ``strategy`` to the death of ``dead`` (which is to be restarted).

    ``order`` is the start order of all children, ``running`` the ids still alive. Siblings that
    must go are stopped in reverse start order; temporary siblings are removed, not restarted.
    """
    if strategy in ("one_for_one", "simple_one_for_one"):
        return RestartPlan((), (), (dead,))
    if strategy == "one_for_all":
        affected = [c for c in order if c != dead]
        start_from = order
    elif strategy == "rest_for_one":
        affected = order[order.index(dead) + 1:]
        start_from = order[order.index(dead):]
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    stop = tuple(c for c in reversed(affected) if c in running)
    remove = tuple(c for c in affected if restart_types[c] == "temporary")
    start = tuple(c for c in start_from if c not in remove)
    return RestartPlan(stop, remove, start)


def validate_flags(strategy: str, intensity, period) -> None:
    """Reject supervisor flags OTP would reject, with the accepted values in the message."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(intensity, int) or isinstance(intensity, bool) or intensity < 0:
        raise ValueError(f"intensity must be a non-negative integer, got {intensity!r}")
    if not isinstance(period, (int, float)) or isinstance(period, bool) or period <= 0:
        raise ValueError(f"period must be a positive number of seconds, got {period!r}")


def respawns(strategy: str, restart: str) -> bool:
    """Whether the launcher may restart a crashed child at once (its ``respawn``): when the strategy
    restarts it alone, with nothing to stop first, and its restart type restarts after a crash."""
    return strategy in ("one_for_one", "simple_one_for_one") and restart != "temporary"


def start_bound_s(spec: ChildSpec, start_timeout_s: float) -> float:
    """How long a supervisor waits for the child ``spec`` to be ready.

    A worker gets the supervisor's start timeout. A child supervisor is ready only once each of its
    own children is, and it bounds each of those by its own start timeout; so it gets that bound once
    per child: a layer of a thousand-neuron network on a loaded host may take longer than one timeout,
    and is still making progress, not hung.
    """
    if spec.type != "supervisor":
        return start_timeout_s
    own = float(spec.args.get("start_timeout_s", DEFAULT_START_TIMEOUT_S))
    return max(start_timeout_s, own * max(1, len(spec.args.get("children", ()))))
