"""How a feature plugs into a network: a :class:`Part`, and the one function that assembles the root.

The neuron package knows no feature by name (the brain's chemistry, regions, sleep and shaping; the
messengers and extensions of ``ext``). Each feature is a ``Part``: the topology tables it owns and how
it checks them, how it rewrites a topology document before the layers are read (regions expand their
templates), the children it puts under the network's root, and which parts must start before it --
as Celery's bootsteps do: the start order is derived from ``requires``, and the root supervisor stops
its children in the reverse of their start order. The parts are listed once, in ``neurox/parts.py``
(``PARTS_LIST``); the topology and the reshaper read that list through :func:`registered`.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ._topology import Topology

PARTS_LIST = "neurox.parts:PARTS"
"""Where the one list of parts is (``module:name``): above every package, so that it may name them all."""


@dataclass(frozen=True)
class Part:
    """One feature of a network. Every callable is optional; ``check`` raises ValueError or TypeError
    (the topology turns it into a TopologyError with the same message)."""

    name: str
    sections: tuple[str, ...] = ()
    """The top-level topology tables it owns (a topology with a table no part owns is refused)."""
    schemas: Mapping[str, type] = field(default_factory=dict, hash=False, compare=False)
    """Section -> the ``msgspec.Struct`` its table decodes into (type-checked before ``check``)."""
    check: Callable[[Topology], None] | None = None
    expand: Callable[[dict], dict] | None = None
    """Rewrites a topology document (a parsed TOML file) before its layers are read."""
    children: Callable[[Topology, str, str | None, dict], list[dict]] | None = None
    """``children(topology, data_dir, host, options)``: its root children on ``host`` (None: one host)."""
    reserves: tuple[str, ...] = ()
    """Ids it may put under the root, which no layer, region or extension may take."""
    paths: Callable[[Topology], list[str]] | None = None
    """The supervision-tree paths its children take for a topology (checked for clashes)."""
    requires: tuple[str, ...] = ()
    """The parts whose children must start before its own."""


_registered: tuple[Part, ...] | None = None


def registered() -> tuple[Part, ...]:
    """The parts of ``PARTS_LIST``, imported on first use (they sit in layers above this one)."""
    global _registered
    if _registered is None:
        module, name = PARTS_LIST.split(":")
        _registered = tuple(getattr(importlib.import_module(module), name))
    return _registered


def start_order(parts: tuple[Part, ...] | list[Part]) -> list[Part]:
    """``parts`` with every part after the parts it requires, otherwise in the given order.
    ValueError for a requirement that names no part, or a circle."""
    by_name = {part.name: part for part in parts}
    for part in parts:
        missing = [r for r in part.requires if r not in by_name]
        if missing:
            raise ValueError(f"part {part.name!r} requires {missing}, which are not parts: {list(by_name)}")
    ordered: list[Part] = []
    placing: set[str] = set()

    def place(part: Part) -> None:
        if part in ordered:
            return
        if part.name in placing:
            raise ValueError(f"parts require one another in a circle through {part.name!r}")
        placing.add(part.name)
        for required in part.requires:
            place(by_name[required])
        placing.discard(part.name)
        ordered.append(part)

    for part in parts:
        place(part)
    return ordered


def assemble(topology: Topology, data_dir: str, host: str | None = None, parts=None, **options) -> list[dict]:
    """Every part's root children for ``topology`` on ``host``, in start order (the parts' ``requires``);
    the root stops them in reverse. ``options`` go to every part (e.g. MessengerIn's ``timeout_ms``)."""
    specs = []
    for part in start_order(registered() if parts is None else parts):
        if part.children is not None:
            specs += part.children(topology, data_dir, host, options)
    return specs


def child_id(spec) -> str:
    """The id of a child spec, a map or a ``ChildSpec``."""
    return spec["id"] if isinstance(spec, dict) else spec.id


def sections() -> set[str]:
    """The top-level topology tables some part owns."""
    return {section for part in registered() for section in part.sections}


def reserved() -> tuple[str, ...]:
    return tuple(name for part in registered() for name in part.reserves)
