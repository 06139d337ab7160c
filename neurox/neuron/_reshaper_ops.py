"""What the reshaper's ops take (docs/protocol.md, "Reshaper"); the topology checks the rest."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from ..runtime import Args, op_arguments
from ._ops import Positive


class AddNeuron(Args):
    layer: str


class RemoveNeuron(Args):
    id: str


class LinkArgs(Args):
    src: str = msgspec.field(name="from")
    dst: str = msgspec.field(name="to")


class AddLayer(Args):
    name: str
    after: str
    """The layer it follows."""
    neurons: Annotated[int, msgspec.Meta(ge=1)] = 1
    settings: dict[str, Any] = {}


class RemoveLayer(Args):
    name: str


class LiveSettings(Args):
    """What changes in a running neuron (``units`` grow by ``widen_layer``)."""

    activation: str | UnsetType = UNSET
    learning_rate: Positive | UnsetType = UNSET
    flush_interval_s: Positive | UnsetType = UNSET
    join_timeout_ms: Positive | UnsetType = UNSET


class SetSettings(Args):
    """New settings for one neuron, or for a layer (kept in the topology)."""

    settings: LiveSettings
    layer: str | None = None
    neuron: str | None = None


class WidenLayer(Args):
    """Every neuron of ``layer`` to ``units`` units (more than it has: widening only)."""

    layer: str
    units: Annotated[int, msgspec.Meta(ge=1)]


class SetLearning(Args):
    learning: bool = True


RESHAPER_ARGS = op_arguments("reshaper", {
    "add_neuron": AddNeuron, "remove_neuron": RemoveNeuron, "add_link": LinkArgs, "remove_link": LinkArgs,
    "add_layer": AddLayer, "remove_layer": RemoveLayer, "set_settings": SetSettings, "set_learning": SetLearning,
    "widen_layer": WidenLayer})
