"""Skip links: a topology's ``[[skip]]`` tables, each linking every neuron of one layer to every neuron
of a later one, beside the links between adjacent layers.

Deep stacks of neurons learn slowly at batch 1 (docs/neuron.md, "Initialisation and depth"): a skip
link gives a later layer -- typically the end node -- a direct view of an earlier one, and the earlier
one a gradient that did not cross every layer in between. Each link is an ordinary link between two
neuron processes (a join at the receiver, a gradient back), so nothing else changes.
"""
from __future__ import annotations


class SkipError(ValueError):
    """A ``[[skip]]`` table that names no layer, or goes backwards."""


def skip_links(tables, layers: list) -> list[tuple[str, str]]:
    """The links of ``[[skip]]`` tables (``from``, ``to``: layer names, ``to`` after ``from`` and not next to it)
    over ``layers`` (each with ``name`` and ``neurons``)."""
    if not isinstance(tables, list):
        raise SkipError("[[skip]] must be an array of tables with 'from' and 'to' (layer names)")
    index = {layer.name: i for i, layer in enumerate(layers)}
    links = []
    for table in tables:
        if not isinstance(table, dict) or set(table) != {"from", "to"}:
            raise SkipError(f"a [[skip]] table has exactly 'from' and 'to' (layer names); got {table!r}")
        src, dst = index.get(table["from"]), index.get(table["to"])
        if src is None or dst is None:
            raise SkipError(f"[[skip]] {table['from']!r} -> {table['to']!r}: layers are {list(index)}")
        if dst <= src + 1:
            raise SkipError(f"[[skip]] {table['from']!r} -> {table['to']!r} must skip at least one layer forward")
        links += [(a, b) for a in layers[src].neurons for b in layers[dst].neurons]
    return links
