"""The schema of a topology document's own tables (``_topology`` reads them; parts declare theirs).

Types only: what each key must be (``units`` a whole number, ``region`` a name, ``[[link]]`` a pair of
names). The rules between keys and values (a softmax only last, a policy among ``POLICIES``) stay in
``Topology.validate``, which also checks topologies that live reshaping builds without a file.
"""
from __future__ import annotations

from typing import Any

import msgspec

from ..runtime import typed
from ._parts import registered


class LayerSettings(msgspec.Struct, forbid_unknown_fields=True):
    """A ``[defaults]`` table: the settings every layer has unless it says otherwise."""

    units: int | None = None
    activation: str | None = None
    learning_rate: float | None = None
    policy: str | None = None
    flush_interval_s: float | None = None
    join_timeout_ms: float | None = None
    transmitter: str | None = None
    plasticity: str | None = None
    region: str | None = None
    strategy: str | None = None
    context: float | None = None
    staleness: str | None = None
    staleness_group: int | None = None
    init: str | None = None


class LayerDoc(LayerSettings, forbid_unknown_fields=True):
    """A ``[[layer]]`` table: its settings, its name and size, or a region ``template`` it stands for,
    and in a network spread over hosts the ``host`` it runs on."""

    name: str | None = None
    neurons: int | None = None
    template: str | None = None
    host: str | None = None


class LinkDoc(msgspec.Struct, forbid_unknown_fields=True):
    """A ``[[link]]`` table: one neuron feeding another."""

    from_: str = msgspec.field(name="from")
    to: str


class SkipDoc(msgspec.Struct, forbid_unknown_fields=True):
    """A ``[[skip]]`` table: every neuron of one layer feeding every neuron of a later one."""

    from_: str = msgspec.field(name="from")
    to: str


class Supervision(msgspec.Struct, forbid_unknown_fields=True):
    """``[supervision]``: how many restarts a layer's supervisor allows in how long."""

    intensity: int | None = None
    period_s: float | None = None


class RegionFlags(Supervision, forbid_unknown_fields=True):
    """A ``[region.NAME]`` table: its region supervisor's flags."""

    strategy: str | None = None


class TopologyDoc(msgspec.Struct):
    """A topology document's core tables (the parts' tables are checked by the parts' own schemas)."""

    name: str | None = None
    input_width: int | None = None
    seed: int | None = None
    defaults: LayerSettings | None = None
    supervision: Supervision | None = None
    output: dict[str, Any] | None = None
    layer: list[LayerDoc] | None = None
    link: list[LinkDoc] | None = None
    hosts: dict[str, str] | None = None
    region: dict[str, RegionFlags] | None = None
    text: dict[str, Any] | None = None
    skip: list[SkipDoc] | None = None


def check_types(doc: dict) -> None:
    """ConfigError unless every table of a topology document has the types its schema gives: the core
    tables' here, a part's table its part's (``Part.schemas``)."""
    typed(TopologyDoc, doc)
    for part in registered():
        for section, schema in part.schemas.items():
            if section in doc:
                typed(schema, doc[section], at=section)
