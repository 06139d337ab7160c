"""What a modulator's control ops take (docs/protocol.md, "Neuromodulators"); a number must also be finite."""
from __future__ import annotations

from typing import Literal

from ..neuron import STATES, TRANSMITTERS
from ..runtime import Args, op_arguments


class SetState(Args):
    state: Literal[STATES]


class Release(Args):
    transmitter: Literal[TRANSMITTERS]
    amount: float
    """Negative removes; a level stays >= 0."""


class Reward(Args):
    reward: float


MODULATOR_ARGS = op_arguments("modulator", {"set_state": SetState, "release": Release, "reward": Reward})
