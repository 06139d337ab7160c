"""A network of neurons as one supervised tree: a supervisor per layer, and one per brain region.

``Network`` writes the live topology into its data directory, builds the tree and starts it through a
:class:`~neurox.supervisor_tree.Tree`. Under the root: a supervisor per plain layer (``root/LAYER``),
and a supervisor per region (``root/REGION``, at the place of the region's first layer, with its own
strategy) whose children are its layers' supervisors (``root/REGION/LAYER``), in network order; each
layer supervisor holds one worker per neuron. The reshaper and any extension processes such as
MessengerIn/Out follow the layers.
With ``host`` it is that host's part of a network spread over hosts: only the layers placed there
(the reshaper only on the front host), and ``tcp.json`` in the run directory for the links to the
other hosts (see ``_placement``).
"""
from __future__ import annotations

import os

from ..runtime import write_tcp_plan
from ..supervisor_tree import ChildSpec, Tree, control_endpoint, root_args, supervisor_spec
from ._data_dir import claim
from ._endpoints import messenger_in_endpoint, topology_path
from ._placement import front_host, layers_on, tcp_exports, tcp_routes
from ._topology import Topology

NEURON_TARGET = "neurox.neuron._process:run_neuron"
RESHAPER_TARGET = "neurox.neuron._reshaper:run_reshaper"
NEURON_SHUTDOWN_MS = 5000
PRELOAD = ("neurox.neuron._process", "neurox.neuron._reshaper", "neurox.supervisor_tree._supervisor",
           "neurox.runtime._events")


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


def live_topology(topology: Topology, data_dir: str, resume: bool) -> Topology:
    """The shape a network in ``data_dir`` starts with: the one it had (``resume``), else ``topology``."""
    claim(data_dir)
    live = topology_path(data_dir)
    return Topology.load(live) if resume and os.path.exists(live) else topology


class Network:
    """A running network on this host. ``resume=True`` keeps the shape already in ``data_dir``."""

    def __init__(self, topology: Topology, data_dir: str, extensions: list[ChildSpec] = (),
                 run_dir: str | None = None, resume: bool = False, preload: tuple[str, ...] = (),
                 host: str | None = None, keys_dir: str | None = None):
        self.data_dir = os.path.abspath(data_dir)
        topology = live_topology(topology, self.data_dir, resume)
        topology.save(topology_path(self.data_dir))
        self.topology = topology
        self.host = host
        children = layer_children(topology, layers_on(topology, host), self.data_dir)
        if host is None or host == front_host(topology):
            children.append(ChildSpec("reshaper", RESHAPER_TARGET, {"data_dir": self.data_dir}, "permanent", 5000,
                                      "worker", ("neurox.neuron._reshaper",)))
        # The layers, the reshaper and the extensions do not depend on one another to start (links are
        # connected lazily), so they are all started at once; they still stop in reverse order.
        self.tree = Tree(root_args([*children, *extensions], start_concurrently=True), run_dir=run_dir,
                         preload=(*PRELOAD, *preload))
        if host is not None:
            write_tcp_plan(self.tree.run_dir, host, keys_dir, tcp_exports(topology, host), tcp_routes(topology, host))

    def start(self) -> "Network":
        self.tree.start()
        return self

    def stop(self):
        return self.tree.stop()

    def __enter__(self) -> "Network":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def run_dir(self) -> str:
        return self.tree.run_dir

    @property
    def control(self) -> str:
        return self.tree.control

    @property
    def events(self) -> str:
        return self.tree.events

    @property
    def reshaper(self) -> str:
        """Control endpoint of the reshaper (see ``Reshaping``)."""
        return control_endpoint(self.run_dir, "root/reshaper")

    @property
    def messenger_in(self) -> str:
        return messenger_in_endpoint(self.run_dir)
