"""The topologies NeuroX ships, by name: the diamond, and the release shapes ``prod`` and ``test``.

``neurox run --topology NAME`` (and every other ``--topology``) takes one of these names or the path
of a TOML file; the files are beside this module (``neurox/neuron/NAME.toml``), to copy and edit.
"""
from __future__ import annotations

import os

from ._topology import DIAMOND_TOML, Topology, load_topology

HERE = os.path.dirname(__file__)
SHAPES = {"diamond": DIAMOND_TOML, "prod": os.path.join(HERE, "prod.toml"), "test": os.path.join(HERE, "test.toml")}
"""Shipped shape -> its file: diamond 1-2-3-2-1 (the default), test 1-2-5-8-10-8-5-2-1 (9 layers,
42 neurons), prod 1-2-...-10-...-2-1 (19 layers, 100 neurons)."""


def topology_file(name_or_path: str | None) -> str:
    """The file of a shipped shape's name, else the path as given (None: the diamond's file)."""
    if name_or_path is None:
        return DIAMOND_TOML
    return SHAPES.get(name_or_path, name_or_path)


def load_shape(name_or_path: str | None) -> Topology:
    """The topology of a shipped shape's name or of a TOML file (None: the diamond)."""
    return load_topology(topology_file(name_or_path))
