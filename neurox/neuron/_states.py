"""Awake, meditative and maintenance: a neuron's state and what it changes (pure).

The state scales how often a neuron writes its LevelDB (its write-behind interval):

- ``awake`` (the default): the configured ``flush_interval_s``: the network works and learns online.
- ``meditative``: ten times longer: a quiet network that mostly answers keeps its disk idle; a crash
  loses at most that much learning.
- ``maintenance``: five times shorter: while a neuron is being fine-tuned (replay, education) its
  weights change fast and it may be moved between pools, so its state is saved often.

A neuron's state follows its region (the region's modulator publishes it with the levels) and can be
set by hand (``set_state``); the latest change wins.
"""
from __future__ import annotations

STATES = ("awake", "meditative", "maintenance")
DEFAULT_STATE = "awake"
FLUSH_FACTORS = {"awake": 1.0, "meditative": 10.0, "maintenance": 0.2}


def check_state(state) -> str:
    """``state`` if it is one of STATES; else a ValueError listing them."""
    if state not in STATES:
        raise ValueError(f"state must be one of {list(STATES)}, got {state!r}")
    return state


def flush_interval(state: str, configured_s: float) -> float:
    """The LevelDB write-behind interval in ``state`` for a configured (awake) interval."""
    return configured_s * FLUSH_FACTORS[check_state(state)]
