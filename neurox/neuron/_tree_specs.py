"""The child specs of a network's tree: a neuron, a layer's supervisor, a region's, and where a layer
added or removed live starts and stops. Pure: they read a topology and build specs; ``Network`` and the
reshaper start them."""
from __future__ import annotations

from ..supervisor_tree import ChildSpec, supervisor_spec
from ._topology import Topology

NEURON_TARGET = "neurox.neuron._process:run_neuron"
NEURON_SHUTDOWN_MS = 5000


def neuron_spec(neuron_id: str, data_dir: str, seed_from_siblings: bool = False) -> ChildSpec:
    args = {"neuron": neuron_id, "data_dir": data_dir}
    if seed_from_siblings:
        args["seed_from_siblings"] = True
    return ChildSpec(neuron_id, NEURON_TARGET, args, "permanent", NEURON_SHUTDOWN_MS, "worker",
                     ("neurox.neuron._process",))


def layer_spec(topology: Topology, layer_name: str, data_dir: str) -> ChildSpec:
    """A layer's supervisor: one_for_one over its neurons (a neuron's death concerns only itself),
    unless its ``strategy`` setting (a region's template) says otherwise."""
    layer = topology.layer_named(layer_name)
    strategy = {**topology.defaults, **layer.settings}.get("strategy", "one_for_one")
    return supervisor_spec(layer.name, [neuron_spec(n, data_dir) for n in layer.neurons], strategy,
                           int(topology.supervision["intensity"]), float(topology.supervision["period_s"]),
                           start_concurrently=True)


def region_spec(topology: Topology, region: str, layer_names: list[str], data_dir: str) -> ChildSpec:
    """A region's supervisor over the given layers of it, with the region's flags (its template's, or the
    topology's ``[region.NAME]``). Its layers start at once: they do not depend on one another to start."""
    flags = topology.region_supervision(region)
    return supervisor_spec(region, [layer_spec(topology, name, data_dir) for name in layer_names],
                           flags["strategy"], int(flags["intensity"]), float(flags["period_s"]),
                           start_concurrently=True)


def subtrees(topology: Topology, layer_names: list[str]) -> list[tuple[str | None, list[str]]]:
    """The root's children that hold these layers, in order: ``(None, [layer])`` for a plain layer,
    ``(region, its layers among these)`` for a region, at the place of its first layer."""
    grouped: dict[str, list[str]] = {}
    order: list[tuple[str | None, list[str]]] = []
    for name in layer_names:
        region = topology.supervising_region(name)
        if region is None:
            order.append((None, [name]))
        elif region in grouped:
            grouped[region].append(name)
        else:
            grouped[region] = [name]
            order.append((region, grouped[region]))
    return order


def layer_children(topology: Topology, layer_names: list[str], data_dir: str) -> list[ChildSpec]:
    """The root's children that supervise these layers (``subtrees``)."""
    return [layer_spec(topology, layers[0], data_dir) if region is None
            else region_spec(topology, region, layers, data_dir)
            for region, layers in subtrees(topology, layer_names)]


def start_site(topology: Topology, layer_name: str, data_dir: str) -> tuple[str, ChildSpec]:
    """Where a layer added live starts, and as what: under its region's supervisor if other layers of
    the region run, else under the root -- inside a new region supervisor if it opens a region."""
    region = topology.supervising_region(layer_name)
    if region is None:
        return "root", layer_spec(topology, layer_name, data_dir)
    if topology.region_layers(region) != [layer_name]:
        return f"root/{region}", layer_spec(topology, layer_name, data_dir)
    return "root", region_spec(topology, region, [layer_name], data_dir)


def stop_site(topology: Topology, layer_name: str) -> tuple[str, str]:
    """The supervisor and child to stop to remove a layer: the layer's own supervisor, or its region's
    supervisor when it is the region's last layer."""
    region = topology.supervising_region(layer_name)
    if region is not None and topology.region_layers(region) == [layer_name]:
        return "root", region
    parent, child = topology.supervisor_path(layer_name).rsplit("/", 1)
    return parent, child
