"""The neuron's side of the chemistry: what the levels do to it, and its link to its region's modulator.

A region's modulator (``neurox.brain``) computes the levels; a neuron only senses them. Relative to
rest, ``rho = C / rest``: the gain on its summed input is ``rho_glutamate^0.5 * rho_gaba^-0.5 *
rho_serotonin^-0.5`` (kept in [0.25, 4]), its learning-rate factor and its exploration are
``rho_norepinephrine`` (kept in [0.1, 10] and [0.25, 4]); at resting levels every effect is neutral.
Why, and the kinetics, are in docs/brain.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import zmq

from ..runtime import BadFrames, FrameError, ipc_endpoint, make_socket, pack, unpack_map

TRANSMITTERS = ("glutamate", "gaba", "dopamine", "serotonin", "norepinephrine")
"""What a neuron may release (its layer's ``transmitter``); the first two are fast, the rest modulators."""
DEFAULT_TRANSMITTER = "glutamate"
GAIN_EXPONENTS = {"glutamate": 0.5, "gaba": -0.5, "serotonin": -0.5}
LEARNING_RATE_EXPONENTS = {"norepinephrine": 1.0}
EXPLORATION_EXPONENTS = {"norepinephrine": 1.0}
GAIN_BOUNDS = (0.25, 4.0)
LEARNING_RATE_BOUNDS = (0.1, 10.0)
EXPLORATION_BOUNDS = (0.25, 4.0)
PUBLISH_INTERVAL_S = 0.2
"""How often a region's modulator publishes its levels, and a neuron reports its activity, by default."""
LEVELS_TOPIC = b"levels"


@dataclass(frozen=True)
class Modulation:
    """What the levels do to a neuron right now."""

    gain: float = 1.0
    learning_rate_factor: float = 1.0
    exploration: float = 1.0


NEUTRAL = Modulation()


# -- effects on a neuron ---------------------------------------------------------------------
def modulation(levels: dict[str, float], rest: dict[str, float]) -> Modulation:
    """Gain, learning-rate factor and exploration from the levels relative to rest (neutral at rest)."""
    return Modulation(_bounded(_product(levels, rest, GAIN_EXPONENTS), GAIN_BOUNDS),
                      _bounded(_product(levels, rest, LEARNING_RATE_EXPONENTS), LEARNING_RATE_BOUNDS),
                      _bounded(_product(levels, rest, EXPLORATION_EXPONENTS), EXPLORATION_BOUNDS))


def _product(levels: dict, rest: dict, exponents: dict) -> float:
    value = 1.0
    for name, exponent in exponents.items():
        if name in levels and rest.get(name, 0.0) > 0.0:
            value *= max(levels[name] / rest[name], 1e-6) ** exponent
    return value


def _bounded(value: float, bounds: tuple[float, float]) -> float:
    return min(bounds[1], max(bounds[0], value))


def resting_levels(table: dict, region: str) -> dict[str, float]:
    """The resting level of each transmitter in ``region`` from a ``[neurotransmitters]`` table the
    brain has checked (region override, then network-wide, then 1.0)."""
    override = table.get("region", {}).get(region, {})
    return {name: float(override.get(name, {}).get("rest", table.get(name, {}).get("rest", 1.0)))
            for name in TRANSMITTERS}


# -- the link to the region's modulator -----------------------------------------------------------
def levels_endpoint(run_dir: str, region: str) -> str:
    """The PUB socket a region's modulator publishes its levels and state on."""
    return ipc_endpoint(run_dir, f"modulator.{region}.pub")


def reports_endpoint(run_dir: str, region: str) -> str:
    """The PULL socket a region's modulator takes activity and reward reports on."""
    return ipc_endpoint(run_dir, f"modulator.{region}.in")


class ModulatorLink:
    """A neuron's link to its region's modulator: levels in (SUB), activity reports out (PUSH)."""

    def __init__(self, ctx: zmq.Context, run_dir: str, region: str, neuron: str, transmitter: str,
                 interval_s: float):
        self.neuron, self.transmitter, self.interval_s = neuron, transmitter, interval_s
        self.levels = make_socket(ctx, zmq.SUB, connect=levels_endpoint(run_dir, region), linger_ms=0)
        self.levels.setsockopt(zmq.SUBSCRIBE, LEVELS_TOPIC)
        self.reports = make_socket(ctx, zmq.PUSH, connect=reports_endpoint(run_dir, region), hwm=10, linger_ms=0)
        self.activity_sum = 0.0
        self.activity_rows = 0
        self.next_report = time.monotonic() + interval_s

    def note_activity(self, activity_sum: float, rows: int) -> None:
        """Add rows of output whose mean absolute values sum to ``activity_sum``."""
        self.activity_sum += activity_sum
        self.activity_rows += rows

    def report(self, now: float) -> None:
        """Send the mean activity since the last report (0 when idle); a full queue drops it."""
        activity = self.activity_sum / self.activity_rows if self.activity_rows else 0.0
        self.activity_sum, self.activity_rows = 0.0, 0
        self.next_report = now + self.interval_s
        try:
            self.reports.send(pack({"kind": "activity", "neuron": self.neuron, "transmitter": self.transmitter,
                                    "activity": activity}), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def receive(self, bad: BadFrames) -> list[dict]:
        """Every publication waiting, oldest first; a malformed one is counted in ``bad`` and skipped."""
        out = []
        while True:
            try:
                parts = self.levels.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            try:
                if len(parts) != 2:
                    raise FrameError("malformed", "a levels message is [topic, body]")
                out.append(unpack_map(parts[1]))
            except FrameError as exc:
                bad.note(exc.kind, exc.detail)

    def close(self) -> None:
        self.levels.close()
        self.reports.close()
