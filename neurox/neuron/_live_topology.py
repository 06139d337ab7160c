"""The live topology as a neuron reads it: parsed once per version of the file, indexed for one neuron's
questions, shared by every neuron the launcher forks."""
from __future__ import annotations

import os

from ._topology import INPUT, OUTPUT, Layer, Topology, TopologyError


class LiveTopology(Topology):
    """A read-only topology whose questions about one neuron are answered from indexes.

    A thousand neurons inherit one such object from the launcher. The plain queries scan every layer
    and link, and a scan in a forked child writes the reference count of every object it passes, so
    each neuron would copy the pages of the whole network (about 1 MiB at 2,000 neurons) and do
    O(network) work; an index lookup touches only what it returns. Nothing may change it once indexed.
    """

    def index(self) -> "LiveTopology":
        """Build the indexes (in the launcher, before the neurons are forked)."""
        order = {n: i for i, n in enumerate(n for layer in self.layers for n in layer.neurons)}  # network order
        self._layer_by_neuron = {n: layer for layer in self.layers for n in layer.neurons}
        sources: dict[str, set[str]] = {}
        targets: dict[str, set[str]] = {}
        for src, dst in self.links:
            sources.setdefault(dst, set()).add(src)
            targets.setdefault(src, set()).add(dst)
        self._inputs = {n: sorted((s for s in found if s in order), key=order.__getitem__) for n, found in sources.items()}
        self._outputs = {n: sorted((t for t in found if t in order), key=order.__getitem__) for n, found in targets.items()}
        self.neuron_count = len(order)
        return self

    def layer_of(self, neuron_id: str) -> Layer:
        layer = self._layer_by_neuron.get(neuron_id)
        if layer is None:
            raise TopologyError(f"unknown neuron {neuron_id!r}")
        return layer

    def inputs_of(self, neuron_id: str) -> list[str]:
        if self._layer_by_neuron.get(neuron_id) is self.layers[0]:
            return [INPUT]
        return list(self._inputs.get(neuron_id, ()))

    def outputs_of(self, neuron_id: str) -> list[str]:
        if self._layer_by_neuron.get(neuron_id) is self.layers[-1]:
            return [OUTPUT]
        return list(self._outputs.get(neuron_id, ()))


_live: dict[str, tuple[tuple[int, int, int], LiveTopology]] = {}


def load_live_topology(path: str) -> LiveTopology:
    """The live topology at ``path``, parsed once per version of the file (inode, size, mtime).

    The launcher calls it before forking each neuron, so a neuron inherits the parsed topology
    instead of parsing the whole network again -- a thousand neurons would parse it a thousand
    times; a reshape writes a new file (``save`` replaces it), which is parsed once on next use.
    Readers share the object and must not change it; writers use :meth:`Topology.load`.
    """
    stat = os.stat(path)
    version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _live.get(path)
    if cached is None or cached[0] != version:
        cached = _live[path] = (version, LiveTopology.load(path, validate=False).index())
    return cached[1]
