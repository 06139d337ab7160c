"""Neurotransmitter kinetics per region, and what the levels do to a neuron: small pure functions.

Each transmitter's level ``C`` in a region (dimensionless; 1.0 is its resting level by default)
follows one linear equation, the volume-transmission picture of NEST's volume transmitter:

    dC/dt = R(t) - (k_reuptake + k_degradation) * C
    R(t)  = tonic + release_per_activity * drive(t)          tonic = rest * (k_reuptake + k_degradation)

``drive`` is the mean activity over the region's neurons of the neurons that release the transmitter
(a neuron's ``transmitter`` setting), in [0, 1]. Over a step ``dt`` with ``R`` constant the exact
solution is ``C(t + dt) = C* + (C(t) - C*) exp(-k dt)`` with ``C* = R / k``, so the modulator
advances levels exactly whatever its publishing period. Reuptake (transporters: EAAT, GAT, DAT,
SERT, NET) and degradation (MAO/COMT for the monoamines) are both first order: Michaelis-Menten
reuptake ``Vmax C / (Km + C)`` is linear with ``k = Vmax / Km`` while ``C << Km``, which holds near
resting levels. Rewards add *phasic* release at once: a reward prediction error ``delta`` releases
(or, negative, withholds) ``phasic_per_rpe * delta`` of dopamine, never below zero; and the
*disappointment* (:func:`expect`: the recent mean of ``delta`` below minus two of its standard
errors -- outcomes worse than expected for longer than chance explains) releases ``phasic_per_rpe``
times that of norepinephrine (the locus coeruleus answering a decline in utility).

What the levels do (see docs/brain.md for why), relative to rest, ``rho = C / rest``:

- gain on every neuron's summed input, ``y = act(gain * (x W + b))``:
  ``gain = rho_glutamate^0.5 * rho_gaba^-0.5 * rho_serotonin^-0.5``, kept in [0.25, 4];
- learning-rate factor ``rho_norepinephrine``, kept in [0.1, 10];
- exploration (the temperature of a three-factor layer's choice, or the scale of its noise)
  ``rho_norepinephrine``, kept in [0.25, 4];
- dopamine's phasic RPE is the third factor of three-factor plasticity (``_plasticity``).

At resting levels every effect is neutral (gain 1, factor 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import msgspec

from ..neuron import PUBLISH_INTERVAL_S, TRANSMITTERS

EXPECTED_REWARD_RATE = 0.03
"""How fast a region's expected reward follows the rewards (the RPE's baseline): slow enough that a
lower reward after a change stays a disappointment for tens of outcomes (docs/brain.md, "Reward")."""
SURPRISE_RATE = 0.1
"""How fast the recent mean and mean square of the RPE follow it (about the last ten outcomes)."""
DISAPPOINTMENT_ERRORS = 2.0
"""The recent mean RPE is a disappointment beyond this many of its standard errors below zero."""


class ChemistryError(ValueError):
    """A ``[neurotransmitters]`` table that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class Kinetics:
    """One transmitter's parameters in one region (rates per second of network time)."""

    rest: float = 1.0
    release_per_activity: float = 1.0
    reuptake_per_s: float = 1.0
    degradation_per_s: float = 0.0
    phasic_per_rpe: float = 0.0

    @property
    def clearance_per_s(self) -> float:
        return self.reuptake_per_s + self.degradation_per_s

    @property
    def tonic(self) -> float:
        """The release rate that holds the level at rest with no activity."""
        return self.rest * self.clearance_per_s


DEFAULT_KINETICS = {
    # fast synaptic transmitters: cleared by transporters within tens of milliseconds
    "glutamate": Kinetics(release_per_activity=4.0, reuptake_per_s=20.0),
    "gaba": Kinetics(release_per_activity=4.0, reuptake_per_s=10.0),
    # monoamines: slower transporters plus enzymatic degradation
    "dopamine": Kinetics(release_per_activity=2.0, reuptake_per_s=4.0, degradation_per_s=1.0, phasic_per_rpe=1.0),
    "serotonin": Kinetics(release_per_activity=1.0, reuptake_per_s=0.5, degradation_per_s=0.2),
    "norepinephrine": Kinetics(release_per_activity=2.0, reuptake_per_s=1.5, degradation_per_s=0.5,
                               phasic_per_rpe=2.0),
}


@dataclass(frozen=True)
class RegionChemistry:
    """Everything a region's modulator needs: kinetics per transmitter and its timing."""

    kinetics: dict
    publish_interval_s: float = PUBLISH_INTERVAL_S
    expected_reward_rate: float = EXPECTED_REWARD_RATE

    def resting_levels(self) -> dict[str, float]:
        return {name: k.rest for name, k in self.kinetics.items()}


# -- kinetics ---------------------------------------------------------------------------------
def release_rate(kinetics: Kinetics, drive: float) -> float:
    """Release per second for a drive (mean activity of the releasing neurons, in [0, 1])."""
    return kinetics.tonic + kinetics.release_per_activity * max(0.0, drive)


def step(level: float, release: float, clearance_per_s: float, dt: float) -> float:
    """The exact level after ``dt`` seconds of constant ``release`` and first-order clearance."""
    if clearance_per_s <= 0.0:
        return level + release * dt
    steady = release / clearance_per_s
    return steady + (level - steady) * math.exp(-clearance_per_s * dt)


def phasic(level: float, kinetics: Kinetics, rpe: float) -> float:
    """The level just after a reward prediction error's burst (or dip); never negative."""
    return max(0.0, level + kinetics.phasic_per_rpe * rpe)


def advance(levels: dict[str, float], chemistry: RegionChemistry, drives: dict[str, float], dt: float
            ) -> dict[str, float]:
    """Every transmitter's level after ``dt`` seconds at the given drives (missing drives are 0)."""
    return {name: step(levels[name], release_rate(k, drives.get(name, 0.0)), k.clearance_per_s, dt)
            for name, k in chemistry.kinetics.items()}


def drives(activities: list[tuple[str, float]]) -> dict[str, float]:
    """Per transmitter, the mean over all reporting neurons of the activity of those releasing it."""
    if not activities:
        return {}
    total: dict[str, float] = {}
    for transmitter, activity in activities:
        total[transmitter] = total.get(transmitter, 0.0) + min(1.0, max(0.0, activity))
    return {name: value / len(activities) for name, value in total.items()}


def unbiased_step(weight: float, rate: float) -> tuple[float, float]:
    """``(step, new weight)`` of a running mean at a constant ``rate`` without the bias of its start
    (Sutton & Barto 2018, exercise 2.7): the step is ``rate / weight`` with ``weight`` following 1 at
    ``rate`` from 0, so the first value is taken whole and the step falls to ``rate`` as values come."""
    weight += rate * (1.0 - weight)
    return rate / weight, weight


@dataclass(frozen=True)
class Expectations:
    """What a region's modulator expects of its rewards: ``reward`` E[r]; ``mean_rpe`` and ``rpe_power``
    the recent mean of delta and of delta^2; each ``*_weight`` the bias correction of its running mean
    (0 before the first reward)."""

    reward: float = 0.0
    reward_weight: float = 0.0
    mean_rpe: float = 0.0
    rpe_power: float = 0.0
    power_weight: float = 0.0


def expect(now: Expectations, reward: float, rate: float = EXPECTED_REWARD_RATE, surprise_rate: float = SURPRISE_RATE
           ) -> tuple[float, float, Expectations]:
    """``(delta, disappointment, new expectations)`` for one reward. ``delta = r - E[r]``, E[r] moving
    at ``rate`` (bias-corrected: the first reward is taken whole). The disappointment is how far the
    recent mean of delta lies below ``-DISAPPOINTMENT_ERRORS`` standard errors of such a mean
    (``sqrt(a / (2 - a) E[delta^2])`` for a running mean at rate ``a`` of independent outcomes), and
    0 above: single bad outcomes are the noise a learner expects; a run of them means the world got
    worse than it was -- unexpected uncertainty (Yu & Dayan 2005)."""
    step, reward_weight = unbiased_step(now.reward_weight, rate)
    delta = reward - now.reward
    a = surprise_rate
    power_step, power_weight = unbiased_step(now.power_weight, a)
    mean_rpe = now.mean_rpe + a * (delta - now.mean_rpe)
    rpe_power = now.rpe_power + power_step * (delta * delta - now.rpe_power)
    standard_error = math.sqrt(a / (2.0 - a) * rpe_power)
    disappointment = max(0.0, -mean_rpe - DISAPPOINTMENT_ERRORS * standard_error)
    return delta, disappointment, Expectations(now.reward + step * delta, reward_weight, mean_rpe, rpe_power,
                                               power_weight)


# -- configuration ------------------------------------------------------------------------------
KINETIC_KEYS = tuple(f.name for f in fields(Kinetics))
TABLE_KEYS = ("publish_interval_s", "expected_reward_rate", "region", *TRANSMITTERS)
KineticsTable = msgspec.defstruct("KineticsTable", [(k, float | None, None) for k in KINETIC_KEYS],
                                  forbid_unknown_fields=True)
_REGION_KEYS = [("expected_reward_rate", float | None, None), *((t, KineticsTable | None, None) for t in TRANSMITTERS)]
RegionTable = msgspec.defstruct("RegionTable", _REGION_KEYS, forbid_unknown_fields=True)
ChemistryTable = msgspec.defstruct("ChemistryTable", [("publish_interval_s", float | None, None),
                                                      ("region", dict[str, RegionTable] | None, None), *_REGION_KEYS],
                                   forbid_unknown_fields=True)
"""The schema of ``[neurotransmitters]`` (types; ``region_chemistry`` checks the values)."""


def region_chemistry(table: dict, region: str) -> RegionChemistry:
    """A region's chemistry: defaults, then the table's network-wide keys, then ``region.<name>``.

    ``table`` is the topology's ``[neurotransmitters]``; raises ChemistryError naming a bad key.
    """
    unknown = set(table) - set(TABLE_KEYS)
    if unknown:
        raise ChemistryError(f"[neurotransmitters]: unknown keys {sorted(unknown)}; known: {list(TABLE_KEYS)}")
    regions = table.get("region", {})
    if not isinstance(regions, dict):
        raise ChemistryError("[neurotransmitters] region must be a table of region name -> overrides")
    override = regions.get(region, {})
    if not isinstance(override, dict):
        raise ChemistryError(f"[neurotransmitters.region.{region}] must be a table")
    unknown = set(override) - set(TABLE_KEYS) | ({"region", "publish_interval_s"} & set(override))
    if unknown:
        raise ChemistryError(f"[neurotransmitters.region.{region}]: unknown keys {sorted(unknown)}; "
                             f"known: expected_reward_rate and {list(TRANSMITTERS)}")
    kinetics = {}
    for name in TRANSMITTERS:
        k = DEFAULT_KINETICS[name]
        for where, source in (("", table), (f".region.{region}", override)):
            k = _kinetics_with(k, source.get(name, {}), f"[neurotransmitters{where}.{name}]")
        kinetics[name] = k
    interval = _positive(table.get("publish_interval_s", PUBLISH_INTERVAL_S), "publish_interval_s")
    rate = override.get("expected_reward_rate", table.get("expected_reward_rate", EXPECTED_REWARD_RATE))
    if not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
        raise ChemistryError(f"[neurotransmitters] expected_reward_rate must be in (0, 1], got {rate!r}")
    return RegionChemistry(kinetics, interval, float(rate))


def _kinetics_with(kinetics: Kinetics, changes, where: str) -> Kinetics:
    if not isinstance(changes, dict):
        raise ChemistryError(f"{where} must be a table of {list(KINETIC_KEYS)}")
    unknown = set(changes) - set(KINETIC_KEYS)
    if unknown:
        raise ChemistryError(f"{where}: unknown keys {sorted(unknown)}; known: {list(KINETIC_KEYS)}")
    for key, value in changes.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < math.inf:
            raise ChemistryError(f"{where} {key} must be a finite non-negative number, got {value!r}")
    new = replace(kinetics, **{k: float(v) for k, v in changes.items()})
    if new.rest <= 0.0 or new.clearance_per_s <= 0.0:
        raise ChemistryError(f"{where}: rest and reuptake_per_s + degradation_per_s must be positive")
    return new


def _positive(value, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise ChemistryError(f"[neurotransmitters] {key} must be a positive number, got {value!r}")
    return float(value)
