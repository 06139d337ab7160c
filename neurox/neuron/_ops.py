"""What a neuron's control ops take (docs/neuron.md has what each does, docs/protocol.md the table).

``_requests`` checks what a type cannot say: an array's shape against the neuron's, values finite.
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ..runtime import Args, op_arguments
from ._states import STATES

Positive = Annotated[float, msgspec.Meta(gt=0)]


class WireArray(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An array as ``get_params`` gives it: its shape and its float32 little-endian bytes."""

    shape: list[Annotated[int, msgspec.Meta(ge=0)]]
    data: bytes


class SetParams(Args):
    """Arrays to take (``add``: added to the current ones), live settings and flags; at least one."""

    weights: WireArray | UnsetType = UNSET
    bias: WireArray | UnsetType = UNSET
    add: bool = False
    activation: str | UnsetType = UNSET
    learning_rate: Positive | UnsetType = UNSET
    flush_interval_s: Positive | UnsetType = UNSET
    join_timeout_ms: Positive | UnsetType = UNSET
    learning: bool | UnsetType = UNSET
    frozen: bool | UnsetType = UNSET


class RemoveLink(Args):
    direction: Literal["in", "out"]
    peer: str


class AddLink(RemoveLink):
    width: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """The peer's width: required for an input link."""


class Tap(Args):
    on: bool = True


class Inject(Args):
    vector: list[float]
    origin: str | None = None


class Journal(Args):
    on: bool | UnsetType = UNSET


class SetState(Args):
    state: Literal[STATES]


NEURON_ARGS = op_arguments("neuron", {"set_params": SetParams, "add_link": AddLink, "remove_link": RemoveLink,
                                      "tap": Tap, "inject": Inject, "journal": Journal, "set_state": SetState})
